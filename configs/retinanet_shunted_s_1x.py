# RetinaNet + Shunted-S, 1x schedule on COCO. Shunted released no detection code; its authors followed PVTv2's
# detection recipes (upstream issue #17): AdamW lr 1e-4, weight decay 1e-4 (PVT `retinanet_pvt_v2_b2_fpn_1x_coco.py`),
# 12 epochs with steps at 8/11, 1333x800, batch 16 in total.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/shunted_ckpt_S.pth'  # the official ckpt_S.pth (see README "Official weights")
model = dict(
    # Shunted was trained with ImageNet mean/std, mmdet's default data_preprocessor.
    backbone=dict(
        _delete_=True,
        type='ShuntedTransformer',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_eval=True,  # the stem's BatchNorms keep their ImageNet statistics (2 images per GPU)
        with_cp=False,  # set True to trade compute for memory (what the authors did on 48 GB cards)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.0001))

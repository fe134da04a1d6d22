# Mask R-CNN + Shunted-S, 1x schedule on COCO: PVTv2's recipe, which the Shunted authors followed (upstream issue
# #17): AdamW lr 1e-4, weight decay 1e-4 (PVT `mask_rcnn_pvt_v2_b2_fpn_1x_coco.py`), steps at 8/11, 1333x800.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/shunted_ckpt_S.pth'  # the official ckpt_S.pth (see README "Official weights")
model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuntedTransformer',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_eval=True,
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.0001))

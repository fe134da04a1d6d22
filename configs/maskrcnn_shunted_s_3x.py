# Mask R-CNN + Shunted-S, 3x schedule with multi-scale training. Shunted released no detection code; its authors
# followed PVTv2's detection recipes (OliverRensu/Shunted-Transformer#17), here whai362/PVT @57e2dfa detection/configs/
# mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py: DETR-style multi-scale augmentation (short side 480..800, as the Shunted
# paper states), AdamW lr 1e-4, weight decay 0.05 with norms exempt, 36 epochs with steps at 27/33, warm-up 500,
# batch 16, drop path 0.1 (PVTv2's detection backbones hard-code it; pvt_v2.py:365).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
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

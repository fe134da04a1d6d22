# Mask R-CNN + Shunted-S, 1x schedule on COCO. Shunted released no detection code; its authors followed PVTv2's
# detection recipes (OliverRensu/Shunted-Transformer#17), here whai362/PVT @57e2dfa
# detection/configs/mask_rcnn_pvt_v2_b2_fpn_1x_coco.py:
# AdamW, weight decay 1e-4 on every parameter, 12 epochs with steps at 8/11, warm-up 500, 1333x800 single scale,
# batch 16, drop path 0.1 (PVTv2's detection backbones hard-code it; pvt_v2.py:365).
# Difference: lr 1e-4 as the Shunted paper states for COCO (arXiv 2111.15193 Sec. 4.2); PVTv2's file uses 2e-4.
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
# PVTv2: `optimizer = dict(type='AdamW', lr=0.0002, weight_decay=0.0001)`, no parameter exempt from decay
optim_wrapper = dict(optimizer=dict(lr=0.0001, weight_decay=0.0001), paramwise_cfg=dict(norm_decay_mult=1.0))

# Cascade Mask R-CNN + Shunted-S, 3x schedule with multi-scale training. Shunted released no detection code; its
# authors followed PVTv2's detection recipes (OliverRensu/Shunted-Transformer#17), here whai362/PVT @57e2dfa
# detection/configs/cascade_mask_rcnn_pvt_v2_b2_fpn_3x_mstrain_fp16.py: 4conv1fc box heads with SyncBN and GIoU loss
# (shared base), DETR-style multi-scale augmentation, AdamW lr 1e-4, weight decay 0.05 with norms exempt, 36 epochs
# with steps at 27/33, warm-up 500, batch 16, drop path 0.1 (pvt_v2.py:365). PVTv2 trained this one with fp16; here
# fp32.
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
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

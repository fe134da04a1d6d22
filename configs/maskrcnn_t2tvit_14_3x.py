# Mask R-CNN + T2T-ViT-14, 3x schedule with multi-scale training. T2T-ViT's authors published no detection recipe or
# result: ViTDet's simple feature pyramid on the last block, and the recipe of iBOT's plain-ViT-S/16 Cascade 3x config
# file (bytedance/ibot @da316d8 evaluation/object_detection/configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py:
# AdamW 1e-4, wd 0.05, layer-wise lr decay 0.75, drop path 0.1, DETR-style multi-scale training, 36 epochs with steps at
# 27/33, warm-up 500, batch 16) with Mask R-CNN's default heads; fp32 (iBOT: fp16, :153-164). No official number.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/ibot_vit_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/81.5_T2T_ViT_14.pth.tar'
model = dict(
    backbone=dict(
        _delete_=True,
        type='T2TViT',
        arch='14',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))

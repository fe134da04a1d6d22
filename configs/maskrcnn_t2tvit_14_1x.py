# Mask R-CNN + T2T-ViT-14, 1x schedule on COCO. T2T-ViT's authors published no detection recipe or result: ViTDet's
# simple feature pyramid on the last block (after the final norm), and the recipe of iBOT's plain-ViT-S/16 detection run
# (bytedance/ibot @da316d8 evaluation/README.md:73-77: AdamW 1e-4, wd 0.05, layer-wise lr decay 0.8, drop path 0.1, 12
# epochs with steps at 8/11, warm-up 500) with Mask R-CNN's default heads, single-scale 1333x800 training and batch 16 =
# 2 x 8 GPUs (iBOT's run: Cascade heads, DETR-style multi-scale, 4 x 8 images: cascade_maskrcnn_vit_s_1x.py); fp32
# (iBOT: fp16, vit_small_giou_4conv1f_coco_3x.py:153-164). No official number.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/ibot_vit_1x.py',
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

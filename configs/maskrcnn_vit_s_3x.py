# Mask R-CNN + DINO ViT-S/16, 3x schedule with multi-scale training. DINO's authors ran no COCO experiments: this
# borrows iBOT's ViT-S/16 Cascade 3x config file (bytedance/ibot @da316d8
# evaluation/object_detection/configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py: AdamW 1e-4, wd 0.05,
# layer-wise lr decay 0.75, drop path 0.1, DETR-style multi-scale training, 36 epochs with steps at 27/33, warm-up
# 500, batch 16) with Mask R-CNN's default heads. iBOT trained with fp16; here fp32. No official number.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/ibot_vit_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/dino_deitsmall16_pretrain.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='s',
        patch_size=16,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))

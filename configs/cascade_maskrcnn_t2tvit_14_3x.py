# Cascade Mask R-CNN + T2T-ViT-14, 3x schedule with multi-scale training (AdamW 1e-4, wd 0.05, steps 27/33,
# batch 16). Simple feature pyramid on the last block; layer-wise lr decay 0.8. No official downstream numbers.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/81.5_T2T_ViT_14.pth.tar'
model = dict(
    backbone=dict(
        _delete_=True,
        type='T2TViT',
        arch='14',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))

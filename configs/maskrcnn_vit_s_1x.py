# Mask R-CNN + DINO ViT-S/16 (plain ViT, ViTDet simple feature pyramid), 1x schedule on COCO
# (AdamW 1e-4, wd 0.05, steps at 8/11, 1333x800, batch 16; layer-wise lr decay 0.8 as iBOT's ViT-S/16 recipe).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
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
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))

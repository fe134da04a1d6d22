# RetinaNet + DINO ViT-S/16 (plain ViT, ViTDet simple feature pyramid), 1x schedule on COCO
# (AdamW 1e-4, wd 0.05, 12 epochs with steps at 8/11, 1333x800, batch 16 in total).
# DINO's authors ran no COCO experiments; the recipe follows iBOT's ViT-S/16 detection setting
# (layer-wise lr decay 0.8, drop path 0.1; bytedance/ibot evaluation/README.md).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official DINO backbone weights (flat state dict); converted on load. DINO full checkpoints (teacher) load too.
# https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth
pretrained = 'checkpoints/dino_deitsmall16_pretrain.pth'
model = dict(
    # DINO normalises with the ImageNet mean/std in RGB: the mmdet defaults of the base model.
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='s',
        patch_size=16,
        drop_path_rate=0.1,
        # global attention everywhere (1333x800 is ~4.2k tokens); for 1024+ LSJ inputs ViTDet's windowed layout is
        # window_size=14, window_block_indexes=(0, 1, 3, 4, 6, 7, 9, 10)
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))

# Mask R-CNN + T2T-ViT-14, 1x schedule on COCO (AdamW 1e-4, wd 0.05, steps at 8/11, 1333x800, batch 16).
# Simple feature pyramid on the last block (after the final norm); layer-wise lr decay 0.8 (plain-ViT recipe).
# The authors published no detection/segmentation results: there is no official number to reproduce.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
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
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))

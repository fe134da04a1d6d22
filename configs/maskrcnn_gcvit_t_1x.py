# Mask R-CNN + GC ViT-T, 1x schedule on COCO (AdamW 1e-4, wd 0.05, 12 epochs with steps at 8/11, warm-up 500,
# 1333x800, batch 16 in total). GC ViT published a 3x recipe only (maskrcnn_gcvit_t_3x.py): this one borrows Swin's
# AdamW 1x schedule (configs/_base_/schedules/adamw_1x.py) with single-scale training as mmdet's Swin-T Mask R-CNN 1x
# (mmdet configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py; Swin's own 1x trains multi-scale). Backbone settings
# as the official detector (window 24 at every level, drop path 0.2). No official number.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/gcvit_1k_tiny.pth.tar'
model = dict(
    backbone=dict(
        _delete_=True,
        type='GCViT',
        arch='t',
        window_size=24,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}))

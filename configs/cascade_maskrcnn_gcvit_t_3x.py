# Cascade Mask R-CNN + GC ViT-T, the official 3x recipe (NVlabs/GCVit @8e1941f
# detection/configs/gcvit/cascade_mask_rcnn_gcvit_tiny_3x_coco.py): 4conv1fc box heads with SyncBN and GIoU loss
# (Swin's Cascade recipe, shared base), AdamW 1e-4, wd 0.05, 36 epochs with steps at 27/33, linear warm-up 2500
# iterations, DETR-style multi-scale training, 1333x800 test, batch 16 (2 x 8 GPUs), fp32. Official: 51.6 box AP /
# 44.6 mask AP.
# Differences: the weights are the 2023 release (gcvit_1k_tiny, 83.5%), not the gcvit_tiny_best_1k file behind the
# paper's numbers; the BatchNorms of the box heads are not decayed (the official custom key 'norm' misses their
# `bn` names: they were decayed there).
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/gcvit_1k_tiny.pth.tar'
model = dict(
    backbone=dict(
        _delete_=True,
        type='GCViT',
        arch='t',
        window_size=24,  # the official detector's window at every level
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

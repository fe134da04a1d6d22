# Mask R-CNN + GC ViT-T, the official 3x recipe (NVlabs/GCVit @8e1941f detection/configs/gcvit/
# mask_rcnn_gcvit_tiny_3x_coco.py): AdamW 1e-4, wd 0.05 (norms exempt, biases decayed), 36 epochs with steps at 27/33,
# linear warm-up 2500 iterations, DETR-style multi-scale "AutoAugment" training, 1333x800 test, batch 16
# (2 x 8 GPUs). Official: 47.9 box AP / 43.2 mask AP.
# Differences: the official config exempted 'rpb' from weight decay, which matches no parameter, so its
# relative-position tables were decayed; here they are not (as the official Cascade config). The official run used
# fp16 (mmdet: `tools/train.py --amp`). The weights are the 2023 release (gcvit_1k_tiny), not gcvit_tiny_best_1k.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
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

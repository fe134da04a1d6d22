# Mask R-CNN + PyramidTNT-S, 1x schedule on COCO (AdamW 1e-4, wd 0.05, steps at 8/11, warm-up 500, 1333x800,
# batch 16). The paper reports Mask R-CNN with the 3x schedule only (maskrcnn_pyramidtnt_s_3x.py): this config borrows
# the paper's RetinaNet 1x recipe (retinanet_pyramidtnt_s_1x.py, single scale). No official number.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/pyramidtnt_s.pth.tar'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='PyramidTNT',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 512]))
sync_bn = 'torch'  # the new BatchNorms of the x2 adapters learn: synchronised over the GPUs (2 images per GPU)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'relative_pos': dict(decay_mult=0.0)
    }))

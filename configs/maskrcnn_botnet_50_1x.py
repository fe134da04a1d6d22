# Mask R-CNN + BoT50 (ResNet-50 with MHSA in its three c5 blocks, BoTNet paper), 1x schedule on COCO: mmdet's
# Mask R-CNN R-50 recipe (SGD 0.02, momentum 0.9, wd 1e-4, 12 epochs with steps at 8/11, 1333x800, batch 16 in total).
# The paper trains at 1024x1024 with scale jitter on TPUs; its 12-epoch BoT50 row is the closest reference.
# The ResNet-50 parts start from torchvision's ImageNet ResNet-50; the MHSA layers (qkv, relative-position tables,
# the BN after attention) start untrained: no ImageNet BoT50 weights exist, so the paper's numbers are out of reach.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='BoTNet',
        arch='50',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        # frozen BN as mmdet's ResNet (the BN after each new MHSA has no pretrained statistics and still learns)
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'height_rel': dict(decay_mult=0.0), 'width_rel': dict(decay_mult=0.0)}))
# the new BatchNorm after each MHSA learns from scratch: synchronised over the GPUs (2 images per GPU), where
# mmdet's R-50 recipe has only frozen BatchNorms
sync_bn = 'torch'

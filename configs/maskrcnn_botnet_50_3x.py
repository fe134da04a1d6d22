# Mask R-CNN + BoT50, 3x schedule with multi-scale training: mmdet's mask-rcnn_r50_fpn_ms-poly-3x recipe (short side
# 640..800, 3 x 12 epochs of a 3-times repeated COCO = 36 epochs, steps at 9/11, SGD 0.02, wd 1e-4, batch 16).
# The paper's 36-epoch BoT50 row (1024x1024, scale jitter, TPU) is the closest reference.
# The ResNet-50 parts start from torchvision's ImageNet ResNet-50; the MHSA layers (qkv, relative-position tables,
# the BN after attention) start untrained: no ImageNet BoT50 weights exist, so the paper's numbers are out of reach.
_base_ = [
    'mmdet::common/ms-poly_3x_coco-instance.py',
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
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

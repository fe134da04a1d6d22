# RetinaNet + BoT50 (ResNet-50 with MHSA in its three c5 blocks, BoTNet paper), 1x schedule on COCO: mmdet's
# RetinaNet R-50 recipe (SGD 0.01, momentum 0.9, wd 1e-4, 12 epochs with steps at 8/11, 1333x800, batch 16 in total).
# The paper reports no RetinaNet result. The ResNet-50 parts start from torchvision's ImageNet ResNet-50; the MHSA
# layers (qkv projections, relative-position tables, the BN after attention) are new.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='BoTNet',
        arch='50',
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads
        frozen_stages=1,
        # frozen BN as mmdet's ResNet (the BN after each new MHSA has no pretrained statistics and still learns)
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    # mmdet's R-50 RetinaNet spells the same neck as start_level=1 over four levels
    neck=dict(in_channels=[512, 1024, 2048], start_level=0, add_extra_convs='on_input', num_outs=5))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(custom_keys={'height_rel': dict(decay_mult=0.0), 'width_rel': dict(decay_mult=0.0)}))
# the new BatchNorm after each MHSA learns from scratch: synchronised over the GPUs (2 images per GPU), where
# mmdet's R-50 recipe has only frozen BatchNorms
sync_bn = 'torch'

# UPerNet + BoT50 on ADE20K, 512x512 crops, 160k iterations: mmseg's UPerNet R-50 recipe (SGD 0.01, momentum 0.9,
# wd 5e-4, poly decay with power 0.9 to 1e-4, SyncBN trained everywhere, batch 16 = 4 GPUs x 4 images).
# The paper reports no segmentation result. The relative-position tables are laid out for the 512x512 crops.
# Difference: mmseg's recipe uses ResNetV1c (deep stem, open-mmlab://resnet50_v1c); BoT50 keeps ResNet-50's 7x7 stem
# and starts from torchvision's ResNet-50. The MHSA layers start untrained (no ImageNet BoT50 weights exist).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/mmvit_imports.py',
]
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='BoTNet',
        arch='50',
        out_indices=(0, 1, 2, 3),
        pretrain_img_size=crop_size,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    decode_head=dict(in_channels=[256, 512, 1024, 2048], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=1024, num_classes=150, norm_cfg=norm_cfg))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={'height_rel': dict(decay_mult=0.0), 'width_rel': dict(decay_mult=0.0)}))

# UPerNet + PyramidTNT-S on ADE20K, 512x512 crops, 160k iterations. PyramidTNT published no segmentation recipe or
# result: this borrows Swin's UPerNet recipe as mmseg ships it (configs/_base_/schedules/adamw_160k.py: AdamW 6e-5,
# wd 0.01, warm-up 1500, poly; batch 16; SyncBN heads, auxiliary FCN head on level 2), as its detection configs
# borrow Swin's detection code. Drop path 0.1 = PyramidTNT-S's ImageNet value (Swin's UPerNet uses 0.3 with Swin-T,
# pretrained at 0.2). No official number.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/pyramidtnt_s.pth.tar'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='PyramidTNT',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=512, num_classes=150, norm_cfg=norm_cfg))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'relative_pos': dict(decay_mult=0.0)
    }))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)
# the stem's and the x2 adapters' BatchNorms learn (norm_eval=False): synchronised over the GPUs, as the heads' SyncBN
sync_bn = 'torch'

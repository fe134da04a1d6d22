# UPerNet + ResMLP-S24 on ADE20K, 512x512 crops, 160k iterations: the project's Swin UPerNet recipe (AdamW 6e-5,
# wd 0.01, warm-up 1500, poly; batch 16 = 2 x 8 GPUs), drop path 0.1 (constant over the blocks, ResMLP's rule), tested
# with 512x512 sliding windows (stride 341). No ResMLP segmentation recipe has been published.
# Input normalisation: ImageNet mean/std on RGB (deit's), the mmdet/mmseg base model's.
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/resmlp_24_no_dist.pth'  # official deit file, loads as is (see retinanet_resmlp_24_1x.py)
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='ResMLP',
        arch='24',
        token_mixing='window',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)
# deit's optimizer exempts 1-D parameters from weight decay: biases, the affine "norms" (alpha, beta), layer scales
optim_wrapper = dict(paramwise_cfg=dict(bias_decay_mult=0.0, custom_keys={
    '.alpha': dict(decay_mult=0.0), '.beta': dict(decay_mult=0.0), '.ls1': dict(decay_mult=0.0),
    '.ls2': dict(decay_mult=0.0)}))

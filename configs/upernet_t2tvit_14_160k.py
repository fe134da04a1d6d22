# UPerNet + T2T-ViT-14 on ADE20K, 512x512 crops, 160k iterations. Optimiser as the plain-ViT-S UPerNet recipe
# (AdamW 3e-5, wd 0.05, layer-wise lr decay 0.9, poly with 1500 warm-up iterations); simple feature pyramid on the
# last block after the final norm. The authors published no segmentation results (no official number).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/81.5_T2T_ViT_14.pth.tar'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),  # ImageNet mean/std in RGB (T2T-ViT's) are the base model's
    backbone=dict(
        _delete_=True,
        type='T2TViT',
        arch='14',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    optimizer=dict(lr=3e-05, weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

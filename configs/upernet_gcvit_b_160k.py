# UPerNet + GC ViT-B on ADE20K, 512x512 crops, 160k iterations (mmseg's Swin UPerNet recipe: AdamW 6e-5,
# wd 0.01, poly decay, batch 16). The GC ViT paper reports 49.0 mIoU (single scale) for this model; its segmentation
# code was not released, so the recipe is Swin's (drop path 0.3).
# Layer scale: GC ViT-B was pretrained with per-channel layer scales (gamma1/gamma2, initialised to 1e-5: NVlabs/GCVit
# @8e1941f models/gc_vit.py:886), and this backbone builds them for arch 'b' and loads the checkpoint's learnt values,
# so each block computes what the classifier computed. The official detection backbone defaults to layer_scale=None
# (detection/models/gc_vit.py:641; no released config sets it) and loads with strict=False (:728), which would drop the
# gammas and add every attention/MLP branch at full weight; how the paper's GC ViT-B runs set it is not known.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/gcvit_1k_base.pth.tar'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    # ImageNet mean/std on RGB (the upernet base's values)
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='GCViT',
        arch='b',
        # windows 16/16/32/16 at 512 crops: the official 512-pixel model's windows (gc_vit_large_512_21k). The maps
        # of a 512x512 crop (128/64/32/16) are whole multiples of them and every global query is one window
        # without resizing, as 7/7/14/7 at 224; larger test images are padded per block.
        window_size=(16, 16, 32, 16),
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=512, num_classes=150, norm_cfg=norm_cfg))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

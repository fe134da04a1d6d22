# UPerNet + DINO ViT-S/16 on ADE20K, 512x512 crops, 160k iterations: iBOT's ViT-S/16 UPerNet recipe
# (bytedance/ibot @da316d8 evaluation/semantic_segmentation/configs/upernet/vit_small_512_ade20k_160k.py with
# evaluation/README.md:93-96: AdamW 3e-5, wd 0.05, layer-wise lr decay 0.9, linear warm-up 1500 from 1e-6 then poly
# 1.0, drop path 0.1, features after the final norm, decode head 384 channels, sliding-window test 512 / stride 341
# over the 2048x512 image, batch 16 (2 x 8 GPUs; iBOT: 4 x 4)). DINO published no segmentation result.
# Differences: the pyramid is ViTDet's from the last block (iBOT: blocks 4/6/8/12 with deconvolutions); pos_embed and
# cls_token are not decayed; fp32 (iBOT: fp16).
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/ibot_vit_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/dino_deitsmall16_pretrain.pth'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),  # ImageNet mean/std in RGB (DINO's) are the base model's
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='s',
        patch_size=16,
        drop_path_rate=0.1,
        final_norm=True,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384], channels=384, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

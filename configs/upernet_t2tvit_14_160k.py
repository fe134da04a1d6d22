# UPerNet + T2T-ViT-14 on ADE20K, 512x512 crops, 160k iterations. T2T-ViT published no segmentation recipe or result:
# this borrows iBOT's plain-ViT-S/16 UPerNet recipe (bytedance/ibot @da316d8 evaluation/semantic_segmentation/configs/
# upernet/vit_small_512_ade20k_160k.py with evaluation/README.md:93-96: AdamW 3e-5, wd 0.05, layer-wise lr decay 0.9
# over the 14 blocks, linear warm-up 1500 from 1e-6 then poly 1.0, drop path 0.1, features after the final norm, decode
# head 384 channels, sliding-window test 512 / stride 341, batch 16). The pyramid is ViTDet's simple feature pyramid
# from the last block (iBOT: blocks 4/6/8/12 with deconvolutions); fp32 (iBOT: fp16, :67-78). No official number.
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/ibot_vit_160k.py',
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
    decode_head=dict(in_channels=[96, 192, 384, 384], channels=384, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

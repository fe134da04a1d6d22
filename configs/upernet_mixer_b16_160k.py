# UPerNet + MLP-Mixer-B/16 on ADE20K, 512x512 crops, 160k iterations: the project's Swin UPerNet recipe (AdamW 6e-5,
# wd 0.01, warm-up 1500, poly; batch 16 = 2 x 8 GPUs), drop path 0.1, tested with 512x512 sliding windows (stride 341).
# RaftMLP's only Mixer segmentation run used Semantic FPN, 40k iterations (okojoalg/raft-mlp configs/segmentation/
# fpn_org_mixer_512x512_40k_ade20k.py); no UPerNet recipe for Mixer has been published.
# Input normalisation: Mixer's own, (x - 127.5) / 127.5 on RGB (vit_jax/input_pipeline.py).
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/Mixer-B_16.npz'  # official Flax file, loads as is (see retinanet_mixer_b16_1x.py)
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='MLPMixer',
        arch='b16',
        token_mixing='window',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 768], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=768, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

# UPerNet + MLP-Mixer-B/16 on ADE20K, 512x512 crops, 160k iterations. No UPerNet recipe for Mixer has been published
# (RaftMLP's only Mixer segmentation run used Semantic FPN, 40k iterations: okojoalg/raft-mlp @6060d5d
# configs/segmentation/fpn_org_mixer_512x512_40k_ade20k.py); this borrows Swin's UPerNet recipe as mmseg ships it
# (_base_/schedules/adamw_160k.py: AdamW 6e-5, wd 0.01, warm-up 1500, poly; batch 16 = 2 x 8 GPUs; SyncBN heads,
# auxiliary FCN head on level 2). Differences and choices:
# * drop path 0.1, our choice without a Mixer source: it is what iBOT's UPerNet uses for ViT-B/16, a plain 12-block,
#   768-wide network like Mixer-B/16 (bytedance/ibot @da316d8 evaluation/semantic_segmentation/configs/upernet/
#   vit_base_512_ade20k_160k.py:33); Swin's UPerNet uses 0.3 (for Swin-T/S/B), RaftMLP's Mixer segmentation
#   backbone hard-codes 0 (backbones/__init__.py:264).
# * test with 512x512 sliding windows at stride 341 (_base_/models/upernet_slide_512.py) instead of Swin's whole
#   image. The token MLP runs in fixed 14x14-token windows of the grid, zero-padding the partial ones at the border
#   (mmvit_backbones/models/layers/token_mixing.py): a 512x512 training crop (32x32 tokens) always has partial windows
#   of 4 (unshifted) or 7 and 11 tokens (shifted blocks), and sliding 512x512 crops give the test the same grid, so the
#   token MLPs meet only window shapes they were trained on; a whole resized image (e.g. 512x683: 32x43 tokens) has
#   others (1 and 8 columns). The price: the pyramid pooling module sees 512x512 context, not the whole image.
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

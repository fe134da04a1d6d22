# UPerNet + TNT-S on ADE20K, 512x512 crops, 160k iterations. TNT has no official segmentation code or result; the
# recipe is the project's plain-ViT one (as upernet_vit_s_160k.py; shared bases _base_/schedules/ibot_vit_160k.py and
# _base_/models/upernet_slide_512.py): iBOT's ViT-S/16 UPerNet recipe (bytedance/ibot @da316d8
# evaluation/semantic_segmentation/configs/upernet/vit_small_512_ade20k_160k.py with evaluation/README.md:93-96):
# AdamW 3e-5, wd 0.05, layer-wise lr decay 0.9 (:54-56), linear warm-up 1500 from 1e-6 then poly 1.0 (:58-62),
# drop path 0.1 (:33), features after the final norm, decode head 384 channels (:39), sliding-window test 512 /
# stride 341 (:45; testing sees the 512x512 crops of training: the same 32x32 resize of the 224 position table),
# batch 16 (2 x 8 GPUs; iBOT: 4 x 4); no weight decay on norms, biases and position tables. Differences: ViTDet's
# simple feature pyramid from the last block (iBOT: blocks 4/6/8/12 with deconvolutions); fp32 (iBOT: fp16, :67-78).
# No official number.
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/ibot_vit_160k.py',
    './_base_/mmvit_imports.py',
]
# https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/tnt_s_81.5.pth.tar
pretrained = 'checkpoints/tnt_s_81.5.pth.tar'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    # TNT was trained on images normalised with mean = std = 0.5
    data_preprocessor=dict(size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='TNT',
        arch='s',
        drop_path_rate=0.1,
        final_norm=True,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384], channels=384, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
# the shared base exempts pos_embed and cls_token; TNT's position tables are named outer_pos / inner_pos
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0)}))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

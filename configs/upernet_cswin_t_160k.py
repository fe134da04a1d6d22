# UPerNet + CSWin-T on ADE20K, 512x512 crops, 160k iterations: the official recipe
# (microsoft/CSWin-Transformer@f111ae2 segmentation/configs/cswin/upernet_cswin_tiny.py, mmseg 0.x): AdamW 6e-5, betas
# (0.9, 0.999), wd 0.01 with norms exempt, poly decay (power 1.0 to 0) after a 1500-iteration linear warm-up from
# 1e-6, drop path 0.3, UPerHead + FCN auxiliary head on level 2 with SyncBN, batch 16 (2 x 8 GPUs), whole-image test.
# Official: 49.3 mIoU single-scale, 50.7 multi-scale + flip (README of segmentation/).
# Differences: the official custom key 'norm' (by name) does not match the stem's LayerNorm (`stage1_conv_embed.2`),
# which was decayed there and is exempt here (norms by type); the official runs used apex mixed precision
# (`tools/train.py --amp`).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_tiny_224.pth
pretrained = 'checkpoints/cswin_tiny_224.pth'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    # ImageNet mean/std on RGB (the upernet base's values, as the official ADE20K configs)
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='CSWin',
        arch='t',
        mask_padded_keys=False,  # stripe padding as the official segmentation backbone (README: CSWin)
        # the official segmentation loader takes `state_dict` before `state_dict_ema`
        # (segmentation/mmcv_custom/checkpoint.py load_checkpoint)
        checkpoint_weights='raw',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

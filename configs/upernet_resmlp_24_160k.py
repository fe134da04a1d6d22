# UPerNet + ResMLP-S24 on ADE20K, 512x512 crops, 160k iterations. No ResMLP segmentation recipe has been published:
# Swin's UPerNet recipe as mmseg ships it (_base_/schedules/adamw_160k.py: AdamW 6e-5, wd 0.01, warm-up 1500, poly;
# batch 16 = 2 x 8 GPUs; SyncBN heads, auxiliary FCN head on level 2), no weight decay on 1-D parameters as deit's
# optimizer. Test with 512x512 sliding windows at stride 341 (_base_/models/upernet_slide_512.py) instead of Swin's
# whole image: the 196x196 token layer runs in fixed 14x14-token windows of the grid, zero-padding the partial ones at
# the border (mmvit_backbones/models/layers/token_mixing.py); a 512x512 training crop (32x32 tokens) always has
# partial windows of 4 (unshifted) or 7 and 11 tokens (shifted blocks), and sliding 512x512 crops give the test the
# same grid, so the token layers meet only window shapes they were trained on; a whole resized image (e.g. 512x683:
# 32x43 tokens) has others (1 and 8 columns). The price: the pyramid pooling module sees 512x512 context, not the
# whole image.
# Drop path 0.1, the same in every block as ResMLP applies it (facebookresearch/deit @7e160fe resmlp_models.py:58), is
# our choice: no ResMLP dense-prediction source exists; 0.1 is the `--drop-path` default of deit's main.py (:46), the
# script ResMLP was trained with (the S24 run's own value is not in the repository). Swin's UPerNet uses 0.3 for Swin-T
# (mmseg configs/swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py:17), on a linear ramp.
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

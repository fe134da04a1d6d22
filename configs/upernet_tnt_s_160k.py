# UPerNet + TNT-S on ADE20K, 512x512 crops, 160k iterations. TNT has no official segmentation code or result; the
# recipe is the project's plain-ViT one, iBOT's ViT-S/16 UPerNet setting (bytedance/ibot evaluation/README.md and
# configs/upernet/vit_small_512_ade20k_160k.py): AdamW 3e-5, wd 0.05, layer-wise lr decay 0.9, poly with 1500
# warm-up iterations, drop path 0.1, features after the final norm, sliding-window test (512, stride 341): testing
# sees the 512x512 crops of training (the same 32x32 resize of the 224 position table).
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
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
    decode_head=dict(in_channels=[96, 192, 384, 384], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=150, norm_cfg=norm_cfg))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    optimizer=dict(lr=3e-05, weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)
        }))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

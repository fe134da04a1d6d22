# UPerNet + Shunted-S on ADE20K, 512x512 crops, 160k iterations (mmseg's AdamW/poly transformer recipe).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/adamw_160k.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/shunted_ckpt_S.pth'  # the official ckpt_S.pth (see README "Official weights")
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),  # ImageNet mean/std, as Shunted was trained
    backbone=dict(
        _delete_=True,
        type='ShuntedTransformer',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, num_classes=150, norm_cfg=norm_cfg))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

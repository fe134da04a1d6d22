# UPerNet + Shunted-S on ADE20K, 512x512 crops, 160k iterations: the Shunted paper's segmentation recipe (arXiv
# 2111.15193 Sec. 4.3: UperNet, 160k iterations, AdamW lr 6e-5, 1500 warm-up iterations, as Swin) completed by Swin's
# UPerNet recipe as mmseg ships it (configs/_base_/schedules/adamw_160k.py: wd 0.01, poly; batch 16; SyncBN heads,
# auxiliary FCN head on level 2). Drop path 0.1: not stated by the paper (Swin's UPerNet uses 0.3, Shunted-S was
# pretrained with 0.2). No code was released; the paper's UperNet number could not be verified (README "Recipes").
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
sync_bn = 'torch'  # the stem's BatchNorms learn (norm_eval=False): synchronised over the GPUs, as the heads' SyncBN

# UPerNet + DeepViT-S on ADE20K, 512x512 crops, 160k iterations. No official recipe or number: the project's
# plain-ViT UPerNet recipe (as upernet_vit_s_160k.py; shared bases _base_/schedules/ibot_vit_160k.py and
# _base_/models/upernet_slide_512.py): iBOT's ViT-S/16 UPerNet recipe (bytedance/ibot @da316d8
# evaluation/semantic_segmentation/configs/upernet/vit_small_512_ade20k_160k.py with evaluation/README.md:93-96):
# AdamW 3e-5, wd 0.05 (:54), linear warm-up 1500 from 1e-6 then poly 1.0 (:58-62), drop path 0.1 (:33), features
# after the final norm, decode head 384 channels (:39), sliding-window test 512 / stride 341 (:45), batch 16
# (2 x 8 GPUs; iBOT: 4 x 4). Layer-wise lr decay: iBOT's 0.9 (:56) for 12 blocks rescaled to DeepViT-S's 16
# (0.9 ** (13 / 17) = 0.92). Differences: ViTDet's simple feature pyramid from the last block (iBOT: blocks 4/6/8/12
# with deconvolutions); fp32 (iBOT: fp16, :67-78).
_base_ = [
    './_base_/models/upernet_slide_512.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/ibot_vit_160k.py',
    './_base_/mmvit_imports.py',
]
# Official DeepViT-S weights (Google Drive 1evhBjla4Nth7LawW2PAXnGEcpv3YBWEC, see retinanet_deepvit_s_1x.py).
pretrained = 'checkpoints/DViT_82_16b.pth.tar'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    # DeepViT was trained on images normalised with mean = std = 0.5 (RGB)
    data_preprocessor=dict(size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='DeepViT',
        arch='s',
        drop_path_rate=0.1,
        window_size=14,  # 14x14 windows (+ cls: the pretraining count) in all blocks but 3, 7, 11, 15 (global)
        norm_eval=True,  # the CNN stem's BatchNorms keep their ImageNet statistics
        final_norm=True,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[99, 198, 396, 396], channels=384, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=396, num_classes=150, norm_cfg=norm_cfg))
# the optimiser of ibot_vit_160k.py (no decay on biases, norms incl. the re-attention BatchNorms, pos_embed,
# cls_token) with iBOT's layer-decay rate rescaled to DeepViT-S's 16 blocks (see the header)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.92))
# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)

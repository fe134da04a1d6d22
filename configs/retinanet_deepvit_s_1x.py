# RetinaNet + DeepViT-S (re-attention plain ViT, ViTDet simple feature pyramid on the last block), 1x
# on COCO. DeepViT's authors published no detection code or number: this is the project's plain-ViT recipe (as
# retinanet_vit_s_1x.py; shared base _base_/schedules/ibot_vit_1x.py): iBOT's ViT-S/16 detection run (bytedance/ibot
# @da316d8 evaluation/README.md:73-77 on evaluation/object_detection/configs/cascade_rcnn/
# vit_small_giou_4conv1f_coco_3x.py): AdamW 1e-4, wd 0.05, 12 epochs with steps at 8/11, warm-up 500, drop path 0.1
# (:32) and layer-wise lr decay. DeepViT-S has 16 blocks instead of 12: the decay rate is iBOT's 0.8 rescaled so that
# the patch embedding gets the same lr multiplier as in a 12-block ViT-S (0.8 ** (13 / 17) = 0.84 -> 0.85).
# Differences from iBOT's run: RetinaNet, single-scale 1333x800 training and batch 16 (2 x 8 GPUs) (iBOT:
# Cascade heads, DETR-style multi-scale, 4 x 8 images: cascade_maskrcnn_vit_s_1x.py); the pyramid (iBOT: blocks
# 4/6/8/12 with deconvolutions); fp32 (iBOT: fp16, :153-164). No official number.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/ibot_vit_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official DeepViT-S ImageNet weights (82.3 %; Google Drive only, zhoudaquan/dvit_repo README "DeepViT-16 FC + BN"):
# https://drive.google.com/file/d/1evhBjla4Nth7LawW2PAXnGEcpv3YBWEC/view (timm CheckpointSaver dict; loads as is).
pretrained = 'checkpoints/DViT_82_16b.pth.tar'
model = dict(
    # DeepViT was trained on images normalised with mean = std = 0.5.
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='DeepViT',
        arch='s',
        drop_path_rate=0.1,
        # default layout: 14x14 windows (196 + cls tokens, the count the re-attention maps were trained on) in all
        # blocks but 3, 7, 11, 15, which attend globally with the token-count-invariant re-attention
        window_size=14,
        norm_eval=True,  # the CNN stem's BatchNorms keep their ImageNet statistics (2 images per GPU)
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads (no stride-4 deconvolutions built)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[198, 396, 396], start_level=0, add_extra_convs='on_input', num_outs=5))
# the optimiser of ibot_vit_1x.py (no decay on biases, norms incl. the re-attention BatchNorms, pos_embed,
# cls_token) with iBOT's layer-decay rate rescaled to DeepViT-S's 16 blocks (see the header)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.85))

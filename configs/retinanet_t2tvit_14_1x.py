# RetinaNet + T2T-ViT-14, 1x schedule on COCO. T2T-ViT is a single-scale (stride 16) classifier whose authors published
# no detection/segmentation recipe or result: the stride 8/16/32 levels come from ViTDet's simple feature pyramid on the
# last block (after the final norm), and the recipe is borrowed from iBOT's plain-ViT-S/16 detection run (bytedance/ibot
# @da316d8 evaluation/README.md:73-77: AdamW 1e-4, wd 0.05, layer-wise lr decay 0.8 over the 14 blocks, drop path 0.1,
# 12 epochs with steps at 8/11, warm-up 500) with RetinaNet, single-scale 1333x800 training and batch 16 = 2 x 8 GPUs
# (iBOT's run: Cascade heads, DETR-style multi-scale, 4 x 8 images: cascade_maskrcnn_vit_s_1x.py); fp32 (iBOT: fp16,
# vit_small_giou_4conv1f_coco_3x.py:153-164). No official number.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/ibot_vit_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official ImageNet weights (81.5% top-1): https://github.com/yitu-opensource/T2T-ViT/releases/download/main/
# 81.5_T2T_ViT_14.pth.tar; the EMA weights of the file are used, converted on load.
pretrained = 'checkpoints/81.5_T2T_ViT_14.pth.tar'
model = dict(
    backbone=dict(
        _delete_=True,
        type='T2TViT',
        arch='14',
        drop_path_rate=0.1,
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads (no stride-4 branch built)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[192, 384, 384], start_level=0, add_extra_convs='on_input', num_outs=5))

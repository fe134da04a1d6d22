# Cascade Mask R-CNN + GC ViT-B, 3x: the recipe of cascade_maskrcnn_gcvit_t_3x.py (only the tiny config was
# released officially; NVlabs/GCVit detection/README reports 52.9 box AP / 45.8 mask AP for this model).
# Drop path 0.3, as Swin-S/B in their Cascade recipe (the official S/B detection settings were not released).
_base_ = ['./cascade_maskrcnn_gcvit_t_3x.py']
pretrained = 'checkpoints/gcvit_1k_base.pth.tar'
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.3, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

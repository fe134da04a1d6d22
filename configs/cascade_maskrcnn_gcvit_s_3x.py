# Cascade Mask R-CNN + GC ViT-S, 3x: the recipe of cascade_maskrcnn_gcvit_t_3x.py (only the tiny configs were
# released: NVlabs/GCVit detection/configs/gcvit/; detection/README reports 52.4 box AP / 45.4 mask AP for this model).
# Drop path 0.2: unpublished for GC ViT-S; the value of Swin-S in Swin's Cascade 3x recipe, which GC ViT's detection
# configs copy (Swin-Transformer-Object-Detection @c7b2011 configs/swin/cascade_mask_rcnn_swin_small_patch4_window7_
# mstrain_480-800_giou_4conv1f_adamw_3x_coco.py:14). GC ViT-S was pretrained with 0.3.
# Layer scale: GC ViT-S was pretrained with per-channel layer scales (gamma1/gamma2, initialised to 1e-5: NVlabs/GCVit
# @8e1941f models/gc_vit.py:854), and this backbone builds them for arch 's' and loads the checkpoint's learnt values,
# so each block computes what the classifier computed. The official detection backbone defaults to layer_scale=None
# (detection/models/gc_vit.py:641; no released config sets it) and loads with strict=False (:728), which would drop the
# gammas and add every attention/MLP branch at full weight; how the paper's GC ViT-S runs set it is not known.
_base_ = ['./cascade_maskrcnn_gcvit_t_3x.py']
pretrained = 'checkpoints/gcvit_1k_small.pth.tar'
model = dict(
    backbone=dict(arch='s', drop_path_rate=0.2, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

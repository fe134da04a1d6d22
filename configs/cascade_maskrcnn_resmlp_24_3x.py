# Cascade Mask R-CNN + ResMLP-S24, 3x. No ResMLP Cascade recipe has been published: Swin's official Cascade 3x recipe,
# shared by the project's backbones (SwinTransformer/Swin-Transformer-Object-Detection @c7b2011 configs/swin/
# cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py, used unchanged by GC ViT,
# PVTv2 and iBOT): 4conv1fc box heads with SyncBN and GIoU (shared base), DETR-style multi-scale training, AdamW 1e-4,
# wd 0.05, 36 epochs with steps at 27/33, warm-up 500, batch 16 = 2 x 8 GPUs; no weight decay on 1-D parameters as
# deit's optimizer. Swin trained with fp16 (:129-139); here fp32.
# Drop path 0.1, the same in every block as ResMLP applies it (facebookresearch/deit @7e160fe resmlp_models.py:58), is
# our choice: no ResMLP dense-prediction source exists; 0.1 is the `--drop-path` default of deit's main.py (:46), the
# script ResMLP was trained with (the S24 run's own value is not in the repository). Swin-T uses 0.2 in the borrowed 3x
# recipe (:14), on a linear ramp from 0 (mean 0.1 per block, as here).
# Input normalisation: ImageNet mean/std on RGB (deit's), the mmdet/mmseg base model's.
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/resmlp_24_no_dist.pth'  # official deit file, loads as is (see retinanet_resmlp_24_1x.py)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResMLP',
        arch='24',
        token_mixing='window',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
# deit's optimizer exempts 1-D parameters from weight decay: biases, the affine "norms" (alpha, beta), layer scales
optim_wrapper = dict(paramwise_cfg=dict(bias_decay_mult=0.0, custom_keys={
    '.alpha': dict(decay_mult=0.0), '.beta': dict(decay_mult=0.0), '.ls1': dict(decay_mult=0.0),
    '.ls2': dict(decay_mult=0.0)}))

# Mask R-CNN + ResMLP-S24, 3x schedule with multi-scale training. No ResMLP 3x recipe has been published: Swin's
# official Mask R-CNN 3x recipe, shared by the project's other backbones (SwinTransformer/Swin-Transformer-Object-
# Detection @c7b2011 configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py: 36 epochs,
# steps at 27/33, AdamW 1e-4, wd 0.05, warm-up 500, DETR-style short side 480..800, batch 16 = 2 x 8 GPUs), no weight
# decay on 1-D parameters as deit's optimizer. Swin trained with fp16 (:69-79); here fp32.
# Drop path 0.1, the same in every block as ResMLP applies it (facebookresearch/deit @7e160fe resmlp_models.py:58), is
# our choice: no ResMLP dense-prediction source exists; 0.1 is the `--drop-path` default of deit's main.py (:46), the
# script ResMLP was trained with (the S24 run's own value is not in the repository). Swin-T uses 0.2 in the borrowed 3x
# recipe (:14), on a linear ramp from 0 (mean 0.1 per block, as here).
# Input normalisation: ImageNet mean/std on RGB (deit's), the mmdet/mmseg base model's.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
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

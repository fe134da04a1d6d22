# Mask R-CNN + ResMLP-S24 (ViTDet simple feature pyramid), 1x schedule on COCO: Swin's AdamW 1x recipe (lr 1e-4,
# wd 0.05, 12 epochs with steps at 8/11, warm-up 500, single-scale 1333x800, batch 16 = 2 x 8 GPUs), drop path 0.1
# (constant over the blocks, ResMLP's rule), no weight decay on 1-D parameters as deit's optimizer. No ResMLP
# dense-prediction recipe or number has been published.
# Input normalisation: ImageNet mean/std on RGB (deit's), the mmdet/mmseg base model's.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
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

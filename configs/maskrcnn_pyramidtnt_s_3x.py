# Mask R-CNN + PyramidTNT-S, 3x schedule with multi-scale training: the paper's instance-segmentation recipe
# (arXiv 2201.00978, COCO section: 36 epochs, steps at 27/33, AdamW 1e-4, wd 0.05, batch 16). The multi-scale
# augmentation, warm-up (500) and drop path (0.2) are those of Swin-T's Mask R-CNN 3x recipe in Swin's detection code,
# which the authors point users to (Efficient-AI-Backbones#89; SwinTransformer/Swin-Transformer-Object-Detection
# @c7b2011 configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py). Swin trained with
# fp16; here fp32.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/pyramidtnt_s.pth.tar'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='PyramidTNT',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 512]))
sync_bn = 'torch'  # the new BatchNorms of the x2 adapters learn: synchronised over the GPUs (2 images per GPU)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'relative_pos': dict(decay_mult=0.0)
    }))

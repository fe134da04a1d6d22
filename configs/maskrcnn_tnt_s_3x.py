# Mask R-CNN + TNT-S, 3x schedule with multi-scale training (36 epochs, steps at 27/33, AdamW 1e-4, wd 0.05,
# batch 16). No official detection code or result exists for TNT; plain-ViT recipe of the project (iBOT's ViT-S/16
# 3x config, bytedance/ibot evaluation/object_detection/configs: layer-wise lr decay 0.75, drop path 0.1), no weight
# decay on norms, biases and position tables. Simple feature pyramid on the last block (after the final norm).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/tnt_s_81.5.pth.tar
pretrained = 'checkpoints/tnt_s_81.5.pth.tar'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),  # TNT's mean = std = 0.5
    backbone=dict(
        _delete_=True,
        type='TNT',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)
        }))

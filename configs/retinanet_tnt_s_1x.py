# RetinaNet + TNT-S (Transformer in Transformer), 1x schedule on COCO (AdamW 1e-4, wd 0.05, 12 epochs with steps at
# 8/11, 1333x800, batch 16 in total). TNT has no official detection code or result. TNT-S is a plain (stride-16)
# transformer of ViT-S/16's width and depth, so the recipe is the project's plain-ViT one, iBOT's ViT-S/16 detection
# setting (bytedance/ibot evaluation/README.md): layer-wise lr decay 0.8 over the 12 blocks, drop path 0.1 (also
# TNT-S's ImageNet value), no weight decay on norms, biases and position tables. The stride 8/16/32 levels come from
# ViTDet's simple feature pyramid on the last block (after the final norm).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official ImageNet weights (81.5% top-1, flat state dict; converted on load):
# https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/tnt_s_81.5.pth.tar
pretrained = 'checkpoints/tnt_s_81.5.pth.tar'
model = dict(
    # TNT was trained on images normalised with mean = std = 0.5.
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='TNT',
        arch='s',
        drop_path_rate=0.1,
        # strides 8/16/32 only: FPN never reads stride 4, whose deconvolutions would get no gradient (DDP error)
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[192, 384, 384], start_level=0, add_extra_convs='on_input', num_outs=5))
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)
        }))

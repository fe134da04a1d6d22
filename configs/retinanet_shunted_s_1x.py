# RetinaNet + Shunted-S, 1x schedule on COCO. Shunted released no detection code; its authors followed PVTv2's
# detection recipes (OliverRensu/Shunted-Transformer#17), here whai362/PVT @57e2dfa
# detection/configs/retinanet_pvt_v2_b2_fpn_1x_coco.py:
# AdamW lr 1e-4, weight decay 1e-4 on every parameter, 12 epochs with steps at 8/11, warm-up 500, 1333x800, batch 16
# in total, FPN on strides 8/16/32 with P6/P7 on the input (PVTv2 spells it start_level=1 over 4 levels), drop path
# 0.1 (PVTv2's detection backbones hard-code it; pvt_v2.py:365). Shunted-S was pretrained with drop path 0.2.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/shunted_ckpt_S.pth'  # the official ckpt_S.pth (see README "Official weights")
model = dict(
    # Shunted was trained with ImageNet mean/std, mmdet's default data_preprocessor.
    backbone=dict(
        _delete_=True,
        type='ShuntedTransformer',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads
        norm_eval=True,  # the stem's BatchNorms keep their ImageNet statistics (2 images per GPU)
        with_cp=False,  # set True to trade compute for memory (what the authors did on 48 GB cards)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512], start_level=0, add_extra_convs='on_input', num_outs=5))
# PVTv2: `optimizer = dict(type='AdamW', lr=0.0001, weight_decay=0.0001)`, no parameter exempt from decay
optim_wrapper = dict(optimizer=dict(weight_decay=0.0001), paramwise_cfg=dict(norm_decay_mult=1.0))

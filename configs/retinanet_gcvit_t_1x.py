# RetinaNet + GC ViT-T, 1x schedule on COCO (AdamW 1e-4, wd 0.05, 12 epochs with steps at 8/11, warm-up 500,
# 1333x800, batch 16 in total). No official RetinaNet recipe or result for GC ViT exists: this borrows Swin's AdamW 1x
# schedule (configs/_base_/schedules/adamw_1x.py) and mmdet's Swin-T RetinaNet neck (levels 8/16/32, P6/P7 on the
# stride-32 map; mmdet's Swin RetinaNet itself uses SGD 0.01). Backbone settings as the official detector
# (NVlabs/GCVit detection/models/gc_vit.py: window 24 at every level, drop path 0.2 for T).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official ImageNet-1k weights (https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_tiny.pth.tar); converted
# on load, relative-position tables resized from the 7/14 pretraining windows to 24.
pretrained = 'checkpoints/gcvit_1k_tiny.pth.tar'
model = dict(
    # ImageNet mean/std on RGB: the retinanet base's data_preprocessor already is GC ViT's normalisation.
    backbone=dict(
        _delete_=True,
        type='GCViT',
        arch='t',
        window_size=24,
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),  # strides 8/16/32; P6/P7 from the stride-32 map as Swin's RetinaNet
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512], start_level=0, add_extra_convs='on_input', num_outs=5))
# No weight decay on the relative-position tables (norms and biases: see the schedule).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}))

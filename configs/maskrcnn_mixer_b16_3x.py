# Mask R-CNN + MLP-Mixer-B/16, 3x schedule with multi-scale training (36 epochs, steps at 27/33, AdamW 1e-4, wd 0.05,
# warm-up 500, batch 16 = 2 x 8 GPUs, DETR-style short side 480..800): the Swin/GC ViT 3x recipe the project's other
# backbones use; no Mixer 3x recipe has been published. Drop path 0.2 for the longer schedule.
# Input normalisation: Mixer's own, (x - 127.5) / 127.5 on RGB (vit_jax/input_pipeline.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
pretrained = 'checkpoints/Mixer-B_16.npz'  # official Flax file, loads as is (see retinanet_mixer_b16_1x.py)
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='MLPMixer',
        arch='b16',
        token_mixing='window',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 768]))

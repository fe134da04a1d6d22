# Cascade Mask R-CNN + MLP-Mixer-B/16, 3x: no Mixer Cascade recipe has been published, so this borrows Swin's official
# Cascade 3x recipe, shared by the project's backbones (SwinTransformer/Swin-Transformer-Object-Detection @c7b2011
# configs/swin/cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py, used unchanged
# by GC ViT, PVTv2 and iBOT): 4conv1fc box heads with SyncBN and GIoU (shared base), DETR-style multi-scale training,
# AdamW 1e-4, wd 0.05, 36 epochs with steps at 27/33, warm-up 500, batch 16 = 2 x 8 GPUs. Drop path 0.2 is our
# choice, without a Mixer source: RaftMLP's Mixer detectors (1x only; 0 in okojoalg/raft-mlp @6060d5d
# backbones/__init__.py:127, kept by the 1x configs) give none for a schedule three times as long with multi-scale
# training; 0.2 is Swin-T's and Swin-S's value in Swin's Cascade 3x recipes (:14; Swin-B: 0.3). Swin trained with
# fp16 (:129-139); here fp32.
# Input normalisation: Mixer's own, (x - 127.5) / 127.5 on RGB (vit_jax/input_pipeline.py).
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
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

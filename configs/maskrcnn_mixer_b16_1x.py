# Mask R-CNN + MLP-Mixer-B/16 (ViTDet simple feature pyramid), 1x schedule on COCO: RaftMLP's Mixer Mask R-CNN
# schedule (okojoalg/raft-mlp @6060d5d configs/detection/maskrcnn_org_mixer_fpn_1x_coco.py with
# configs/detection/_base_/schedules/schedule_1x.py:2-11: 12 epochs, AdamW 1e-4, steps 8/11, warm-up 500, fp32)
# and drop path (0: its DetOrgMixer hard-codes drop_path_rate=0., backbones/__init__.py:127), with the project's
# AdamW 1x recipe (wd 0.05 instead of RaftMLP's 1e-4, no decay on LayerNorms), single-scale 1333x800, batch 16
# (2 x 8 GPUs).
# RaftMLP trained its own ImageNet Mixer and resampled the token grid to 14x14 in every block; these are the published
# weights with windowed token mixing (token_mixing='window'). No official number.
# Input normalisation: Mixer's own, (x - 127.5) / 127.5 on RGB (vit_jax/input_pipeline.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
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
        drop_path_rate=0.0,  # RaftMLP's Mixer detectors (DetOrgMixer) hard-code 0
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 768]))

# RetinaNet + MLP-Mixer-B/16 (ViTDet simple feature pyramid from the stride-16 tokens), 1x schedule on COCO.
# No dense-prediction recipe exists for the published Mixer weights. The only published Mixer detector, RaftMLP's
# (okojoalg/raft-mlp @6060d5d configs/detection/retinanet_org_mixer_fpn_1x_coco.py: its own ImageNet weights, grid
# resampled to 14x14 in every block, four stride-16 maps), trained 12 epochs with AdamW 1e-4, wd 1e-4, warm-up 500,
# steps 8/11 (configs/detection/_base_/schedules/schedule_1x.py:2-11), in fp32, with drop path 0 (its DetOrgMixer
# hard-codes drop_path_rate=0., backbones/__init__.py:127). This config keeps that schedule, drop path 0 and
# fp32, with the project's AdamW 1x recipe (wd 0.05 instead of 1e-4, no decay on LayerNorms), single-scale
# 1333x800, batch 16 (2 x 8 GPUs), and the default any-size mechanism (token MLP within shifted 14x14-token windows;
# token_mixing='resample' is RaftMLP's).
# Input normalisation: Mixer's own, (x - 127.5) / 127.5 on RGB (vit_jax/input_pipeline.py).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official Flax file (loads as is): https://storage.googleapis.com/mixer_models/imagenet21k/Mixer-B_16.npz
# (ImageNet-21k; gs://mixer_models/imagenet1k/ for the ImageNet-1k one) or timm's jx_mixer_b16_224-76587d61.pth
pretrained = 'checkpoints/Mixer-B_16.npz'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='MLPMixer',
        arch='b16',
        token_mixing='window',
        drop_path_rate=0.0,  # RaftMLP's Mixer detectors (DetOrgMixer) hard-code 0
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads (no stride-4 deconvolutions built)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[384, 768, 768], start_level=0, add_extra_convs='on_input', num_outs=5))

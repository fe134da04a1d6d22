# ADE20K 160k iterations, AdamW 6e-5 / wd 0.01, linear warm-up 1500 iterations (from 1e-6 x lr) then poly decay
# (power 1.0 to 0): mmseg's Swin UPerNet recipe (mmseg 1.x configs/swin/swin-tiny-patch4-window7-in1k-pre_upernet_
# 8xb2-160k_ade20k-512x512.py, from Swin's official segmentation code). Batch 16 in total (2 images x 8 GPUs).
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']
# No weight decay on norm layers (by type; Swin's custom key 'norm' by name); biases are decayed as in Swin's recipe.
# Configs add the backbone's position tables through `custom_keys`.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-05, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

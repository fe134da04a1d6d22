# 36 epochs, lr x0.1 at epochs 27 and 33 (Swin's/PVTv2's/iBOT's 3x: `lr_config = dict(step=[27, 33])`,
# `max_epochs=36`); otherwise as adamw_1x (warm-up 500 iterations).
_base_ = ['./adamw_1x.py']
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

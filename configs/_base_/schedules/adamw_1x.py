# 12 epochs, AdamW 1e-4 / wd 0.05, lr x0.1 at epochs 8 and 11, linear warm-up over 1000 iterations
# (the recipe of the PyramidTNT and Swin detection papers). Batch 16 in total (2 images x 8 GPUs).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# No weight decay on norms and biases (by module type, robust to naming); configs add the backbone's
# position tables through `custom_keys`.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=None)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# 12 epochs, AdamW 1e-4 / wd 0.05, lr x0.1 at epochs 8 and 11, linear warm-up over 500 iterations from 1e-3 x lr:
# the AdamW 1x recipe of Swin's official detection code (SwinTransformer/Swin-Transformer-Object-Detection
# @c7b2011 configs/_base_/schedules/schedule_1x.py: warm-up 500 / 0.001; configs/swin/*_adamw_*: AdamW 1e-4, wd 0.05),
# which PyramidTNT, PVTv2 (Shunted's source) and iBOT (plain ViT) use unchanged. mmdet 3.x's Swin port warms up over
# 1000 iterations instead. Batch 16 in total (2 images x 8 GPUs).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# No weight decay on norm layers (by module type: Swin's/PVTv2's custom key 'norm' matches the same LayerNorms by
# name, plus the BatchNorms of new heads/adapters). Biases are decayed, as in those recipes; configs add the backbone's
# position tables through `custom_keys`, and the plain-ViT configs exempt biases as iBOT's layer-decay constructor.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=None)
auto_scale_lr = dict(enable=False, base_batch_size=16)

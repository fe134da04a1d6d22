# Cascade Mask R-CNN + DINO ViT-S/16, 1x: the run behind iBOT's published ViT-S/16 COCO numbers (bytedance/ibot
# @da316d8 evaluation/README.md:73-77: `run.sh coco_det ... vit_small teacher 8 data.samples_per_gpu=4
# lr_config.step=8,11 runner.max_epochs=12 optimizer.paramwise_cfg.layer_decay_rate=0.8` on the 3x config file):
# 4conv1fc SyncBN GIoU heads, AdamW 1e-4, wd 0.05, layer-wise lr decay 0.8, drop path 0.1, DETR-style multi-scale
# training, 12 epochs with steps at 8/11, warm-up 500, 32 images per iteration (4 x 8 GPUs). iBOT's numbers are for
# its own ViT-S/16 weights; these are DINO's, and the pyramid differs (see cascade_maskrcnn_vit_s_3x.py).
_base_ = ['./cascade_maskrcnn_vit_s_3x.py']
train_cfg = dict(max_epochs=12)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
# 4 images per GPU x 8 GPUs; lr 1e-4 is for 32 images (`--auto-scale-lr` rescales it for another total)
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(base_batch_size=32)

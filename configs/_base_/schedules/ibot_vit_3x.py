# iBOT's plain-ViT detection optimiser as its Cascade 3x config file ships it (bytedance/ibot @da316d8
# evaluation/object_detection/configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py): layer-wise lr decay 0.75,
# 36 epochs with steps at 27/33; otherwise as ibot_vit_1x.py (AdamW 1e-4, wd 0.05, warm-up 500).
_base_ = ['./ibot_vit_1x.py']
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))

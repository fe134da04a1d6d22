# Cascade Mask R-CNN + TNT-S, 3x schedule with multi-scale training. TNT has no official detection code or result;
# the recipe is the project's plain-ViT Cascade one (as cascade_maskrcnn_vit_s_3x.py; shared bases
# _base_/models/cascade_mask_rcnn_4conv1fc_giou.py and _base_/schedules/ibot_vit_3x.py): iBOT's ViT-S/16 Cascade 3x
# config file as it ships (bytedance/ibot @da316d8 evaluation/object_detection/configs/cascade_rcnn/
# vit_small_giou_4conv1f_coco_3x.py): 4conv1fc box heads with SyncBN and GIoU loss, AdamW 1e-4, wd 0.05, layer-wise
# lr decay 0.75 (:148-150), drop path 0.1 (:32), DETR-style multi-scale training, 36 epochs with steps at 27/33
# (:152-153), warm-up 500, batch 16 (2 x 8 GPUs); no weight decay on norms, biases and position tables.
# iBOT's published ViT-S numbers come from a different run of that file (12 epochs, 32 images, layer decay 0.8; see
# cascade_maskrcnn_vit_s_1x.py). Differences: ViTDet's simple feature pyramid on the last block after the final norm
# (iBOT: blocks 4/6/8/12 with deconvolutions); fp32 (iBOT: fp16, :153-164). No official number.
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/ibot_vit_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/tnt_s_81.5.pth.tar
pretrained = 'checkpoints/tnt_s_81.5.pth.tar'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),  # TNT's mean = std = 0.5
    backbone=dict(
        _delete_=True,
        type='TNT',
        arch='s',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
# the shared base exempts pos_embed and cls_token; TNT's position tables are named outer_pos / inner_pos
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0)}))

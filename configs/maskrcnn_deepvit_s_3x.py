# Mask R-CNN + DeepViT-S, 3x schedule with multi-scale training. No official recipe or number: the project's
# plain-ViT 3x recipe (as maskrcnn_vit_s_3x.py; shared base _base_/schedules/ibot_vit_3x.py): iBOT's ViT-S/16 Cascade
# 3x config file (bytedance/ibot @da316d8 evaluation/object_detection/configs/cascade_rcnn/
# vit_small_giou_4conv1f_coco_3x.py): AdamW 1e-4, wd 0.05, drop path 0.1 (:32), DETR-style multi-scale training,
# 36 epochs with steps at 27/33 (:152-153), warm-up 500, batch 16 (2 x 8 GPUs), with Mask R-CNN's default heads.
# Layer-wise lr decay: iBOT's 0.75 (:148-150) for 12 blocks rescaled to DeepViT-S's 16 (0.75 ** (13 / 17) = 0.80).
# Differences: ViTDet's simple feature pyramid on the last block (iBOT: blocks 4/6/8/12 with deconvolutions); fp32
# (iBOT: fp16, :153-164).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/ibot_vit_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official DeepViT-S weights (Google Drive 1evhBjla4Nth7LawW2PAXnGEcpv3YBWEC, see retinanet_deepvit_s_1x.py).
pretrained = 'checkpoints/DViT_82_16b.pth.tar'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),  # DeepViT: mean = std = 0.5
    backbone=dict(
        _delete_=True,
        type='DeepViT',
        arch='s',
        drop_path_rate=0.1,
        window_size=14,  # 14x14 windows (+ cls: the pretraining count) in all blocks but 3, 7, 11, 15 (global)
        norm_eval=True,  # the CNN stem's BatchNorms keep their ImageNet statistics
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[99, 198, 396, 396]))
# the optimiser of ibot_vit_3x.py (no decay on biases, norms incl. the re-attention BatchNorms, pos_embed,
# cls_token) with iBOT's layer-decay rate rescaled to DeepViT-S's 16 blocks (see the header)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))

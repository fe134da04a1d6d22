# RetinaNet + TNT-S (Transformer in Transformer), 1x schedule on COCO. TNT has no official detection code or result.
# TNT-S is a plain (stride-16) transformer of ViT-S/16's width and depth, so the recipe is the project's plain-ViT
# one (as retinanet_vit_s_1x.py; shared base _base_/schedules/ibot_vit_1x.py): iBOT's ViT-S/16 detection run
# (bytedance/ibot @da316d8 evaluation/README.md:73-77 on evaluation/object_detection/configs/cascade_rcnn/
# vit_small_giou_4conv1f_coco_3x.py): AdamW 1e-4, wd 0.05, layer-wise lr decay 0.8 over the 12 blocks, 12 epochs with
# steps at 8/11, warm-up 500, drop path 0.1 (:32; also TNT-S's ImageNet value), no weight decay on norms, biases and
# position tables. Differences from iBOT's run: RetinaNet, single-scale 1333x800 training and batch 16 (2 x 8 GPUs)
# (iBOT: Cascade heads, DETR-style multi-scale, 4 x 8 images: cascade_maskrcnn_vit_s_1x.py); the stride 8/16/32
# levels come from ViTDet's simple feature pyramid on the last block after the final norm (iBOT: blocks 4/6/8/12 with
# deconvolutions); fp32 (iBOT: fp16, :153-164). No official number.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/ibot_vit_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official ImageNet weights (81.5% top-1, flat state dict; converted on load):
# https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/tnt_s_81.5.pth.tar
pretrained = 'checkpoints/tnt_s_81.5.pth.tar'
model = dict(
    # TNT was trained on images normalised with mean = std = 0.5.
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='TNT',
        arch='s',
        drop_path_rate=0.1,
        # strides 8/16/32 only: FPN never reads stride 4, whose deconvolutions would get no gradient (DDP error)
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[192, 384, 384], start_level=0, add_extra_convs='on_input', num_outs=5))
# the shared base exempts pos_embed and cls_token; TNT's position tables are named outer_pos / inner_pos
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0)}))

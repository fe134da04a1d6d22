# RetinaNet + DINO ViT-S/16 (plain ViT, ViTDet simple feature pyramid on the last block), 1x schedule on COCO.
# DINO's authors ran no COCO experiments and no RetinaNet recipe exists for a plain ViT-S: this borrows iBOT's
# ViT-S/16 detection run (bytedance/ibot @da316d8 evaluation/README.md:73-77: AdamW 1e-4, wd 0.05, layer-wise lr
# decay 0.8, drop path 0.1, 12 epochs with steps at 8/11, warm-up 500) with RetinaNet, single-scale 1333x800 training
# and batch 16 (2 x 8 GPUs; iBOT: 4 x 8). Its pyramid differs from iBOT's (blocks 4/6/8/12 with deconvolutions); no
# official number.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/ibot_vit_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official DINO backbone weights (flat state dict); converted on load. DINO full checkpoints (teacher) load too.
# https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth
pretrained = 'checkpoints/dino_deitsmall16_pretrain.pth'
model = dict(
    # DINO normalises with the ImageNet mean/std in RGB: the mmdet defaults of the base model.
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='s',
        patch_size=16,
        drop_path_rate=0.1,
        # global attention everywhere (1333x800 is ~4.2k tokens); for 1024+ LSJ inputs ViTDet's windowed layout is
        # window_size=14, window_block_indexes=(0, 1, 3, 4, 6, 7, 9, 10)
        out_indices=(1, 2, 3),  # strides 8/16/32: the levels FPN reads (no stride-4 deconvolutions built)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet neck)
    neck=dict(in_channels=[192, 384, 384], start_level=0, add_extra_convs='on_input', num_outs=5))

# RetinaNet + PyramidTNT-S, 1x schedule on COCO: the PyramidTNT paper's detection recipe (arXiv 2201.00978, COCO
# section: AdamW 1e-4, wd 0.05, 12 epochs with steps at 8/11, 1333x800, 2 images per GPU; batch 16 in total).
# Paper: 42.0 box AP. What the paper leaves open comes from Swin's detection code, which the authors point users to
# (huawei-noah/Efficient-AI-Backbones#89; SwinTransformer/Swin-Transformer-Object-Detection @c7b2011): warm-up 500
# iterations, norms exempt from decay; drop path 0.1 = PyramidTNT-S's ImageNet value and Swin-T's in Swin's 1x
# recipe. No official detection code exists.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# Official ImageNet weights (BaiduDisk, see README "Official weights"); converted on load.
pretrained = 'checkpoints/pyramidtnt_s.pth.tar'
model = dict(
    # PyramidTNT was trained on images normalised with mean = std = 0.5.
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='PyramidTNT',
        arch='s',
        drop_path_rate=0.1,
        # strides 8/16/32 only: FPN never reads stride 4, whose x2 adapter would get no gradient (DDP error)
        out_indices=(1, 2, 3),
        norm_eval=True,  # the stem's BatchNorm keeps its ImageNet statistics (2 images per GPU)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3-P5 from the three levels, P6/P7 by stride-2 convs on the stride-32 map (mmdet's RetinaNet R-50/Swin neck)
    neck=dict(in_channels=[256, 512, 512], start_level=0, add_extra_convs='on_input', num_outs=5))
# the new BatchNorms of the x2 adapters learn: synchronise them over the GPUs (2 images per GPU)
sync_bn = 'torch'
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'outer_pos': dict(decay_mult=0.0), 'inner_pos': dict(decay_mult=0.0), 'relative_pos': dict(decay_mult=0.0)
    }))

# Mask R-CNN + CSWin-T, 1x schedule on COCO (AdamW 1e-4, wd 0.05 with norms exempt, 12 epochs with steps at 8/11,
# warm-up 500 iterations, 1333x800 single-scale training, batch 16 in total). CSWin's authors released no detection code
# (issues #2, #25, #36); the paper (arXiv 2107.00652, Sec. 4.2; not re-checked against the PDF here) follows Swin's
# detection setting, so this is Swin's AdamW 1x schedule (configs/_base_/schedules/adamw_1x.py) with single-scale
# training as mmdet's Swin-T Mask R-CNN 1x (mmdet configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py) and its drop path
# 0.2 (:21; Swin's own AdamW 1x config, SwinTransformer/Swin-Transformer-Object-Detection @c7b2011
# configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py:14, uses 0.1 with multi-scale
# training). Swin trained with fp16 (:69-79); here fp32. The paper's 1x numbers are not in the authors' README
# (unverified here).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/mmvit_imports.py',
]
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_tiny_224.pth
# (EMA weights, `state_dict_ema`; checkpoint_weights='raw' picks `state_dict`)
pretrained = 'checkpoints/cswin_tiny_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CSWin',
        arch='t',
        mask_padded_keys=False,  # stripe padding as the official segmentation backbone (README: CSWin)
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# Cascade Mask R-CNN + CSWin-T, 3x schedule with multi-scale training on COCO. CSWin's authors published the results
# (microsoft/CSWin-Transformer README: 52.5 box AP / 45.3 mask AP) but no detection code or configs (issues #2, #25,
# #36). The CSWin paper (arXiv 2107.00652, Sec. 4.2; not re-checked against the PDF here) follows Swin's detection
# setting, so this is Swin's official Cascade Mask R-CNN 3x recipe (SwinTransformer/Swin-Transformer-Object-Detection
# configs/swin/ cascade_mask_rcnn_swin_*_3x_coco.py): 4conv1fc box heads with SyncBN and GIoU loss (shared base),
# AdamW 1e-4, wd 0.05 (norms exempt), 36 epochs with steps at 27/33, warm-up 500 iterations, DETR-style multi-scale
# training, 1333x800 test, batch 16 (2 x 8 GPUs). Not published for CSWin: the drop-path rate (0.2: Swin-T's value in
# that recipe) and the precision (Swin's recipe trains with fp16: `tools/train.py --amp`).
_base_ = [
    './_base_/models/cascade_mask_rcnn_4conv1fc_giou.py',
    './_base_/datasets/coco_instance_ms.py',
    './_base_/schedules/adamw_3x.py',
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

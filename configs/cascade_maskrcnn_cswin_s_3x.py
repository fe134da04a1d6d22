# Cascade Mask R-CNN + CSWin-S, 3x schedule with multi-scale training on COCO: cascade_maskrcnn_cswin_t_3x.py
# (Swin's official Cascade Mask R-CNN 3x recipe with 4conv1fc SyncBN GIoU heads; CSWin released no detection code) with
# the small backbone and drop path 0.2 (Swin-S's value in that recipe; CSWin's is not published).
# Official (microsoft/CSWin-Transformer README): 53.7 box AP / 46.4 mask AP.
_base_ = ['./cascade_maskrcnn_cswin_t_3x.py']
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_small_224.pth
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cswin_small_224.pth')))

# Mask R-CNN + CSWin-B, 3x schedule with multi-scale training on COCO: maskrcnn_cswin_t_3x.py (Swin's official
# Mask R-CNN 3x recipe; CSWin released no detection code) with the base backbone and drop path 0.3 (Swin published no
# Swin-B Mask R-CNN config; 0.3 is Swin-B's value in its Cascade 3x recipe; CSWin's is not published).
# Official (microsoft/CSWin-Transformer README): 50.8 box AP / 44.9 mask AP.
_base_ = ['./maskrcnn_cswin_t_3x.py']
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_base_224.pth
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cswin_base_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

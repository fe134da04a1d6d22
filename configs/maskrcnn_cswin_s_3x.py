# Mask R-CNN + CSWin-S, 3x schedule with multi-scale training on COCO: maskrcnn_cswin_t_3x.py (Swin's official
# Mask R-CNN 3x recipe; CSWin released no detection code) with the small backbone and drop path 0.2 (Swin-S's value in
# that recipe: Swin-Transformer-Object-Detection @c7b2011 configs/swin/mask_rcnn_swin_small_patch4_window7_mstrain_
# 480-800_adamw_3x_coco.py:14; CSWin's is not published). Official (microsoft/CSWin-Transformer README): 50.0 box AP /
# 44.5 mask AP.
_base_ = ['./maskrcnn_cswin_t_3x.py']
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_small_224.pth
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cswin_small_224.pth')))

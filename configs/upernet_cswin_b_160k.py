# UPerNet + CSWin-B on ADE20K, 512x512 crops, 160k iterations: the official recipe as upernet_cswin_t_160k.py with
# the official base settings (microsoft/CSWin-Transformer@f111ae2 segmentation/configs/cswin/upernet_cswin_base.py):
# drop path 0.6. Official (segmentation/README.md): 51.1 mIoU single-scale, 52.2 multi-scale + flip.
_base_ = ['./upernet_cswin_t_160k.py']
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_base_224.pth
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cswin_base_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

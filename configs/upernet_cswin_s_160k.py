# UPerNet + CSWin-S on ADE20K, 512x512 crops, 160k iterations: the official recipe as upernet_cswin_t_160k.py with
# the official small settings (microsoft/CSWin-Transformer@f111ae2 segmentation/configs/cswin/upernet_cswin_small.py):
# drop path 0.4. Official (segmentation/README.md): 50.4 mIoU single-scale, 51.5 multi-scale + flip.
_base_ = ['./upernet_cswin_t_160k.py']
# https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_small_224.pth
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cswin_small_224.pth')))

# mmseg's UPerNet (upernet_r50 base: UPerHead 512 ch + FCN auxiliary head on level 2, weight 0.4) tested with a
# sliding window of 512x512 crops at stride 341 over the 2048x512-resized image, as iBOT's/BEiT's plain-ViT
# UPerNet recipe (bytedance/ibot evaluation/semantic_segmentation/configs/upernet/vit_small_512_ade20k_160k.py:
# test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341))). A backbone with an absolute position
# table learnt at 512x512 then sees the image size it was trained on, instead of a whole 2048x512 image. The
# MLP-Mixer and ResMLP UPerNets use it for the same kind of reason: their token operators run in fixed 14x14-token
# windows, and 512x512 test crops have the window layout (and zero-padded border windows) of the training crops.
# A config uses this file in place of 'mmseg::_base_/models/upernet_r50.py' (mmengine forbids `model` in two bases).
_base_ = ['mmseg::_base_/models/upernet_r50.py']
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

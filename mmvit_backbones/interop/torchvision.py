"""torchvision detection with these backbones: a registered ``mmvit_*`` timm model + torchvision's FPN.

    from torchvision.models.detection import MaskRCNN
    from mmvit_backbones.interop.torchvision import TimmFPNBackbone

    model = MaskRCNN(TimmFPNBackbone('mmvit_cswin_t'), num_classes=91)

The backbone's levels (strides 4/8/16/32) become the FPN's maps ``'0'``..``'3'`` and a max-pooled ``'pool'`` (stride
64): the five maps and names torchvision's default anchor generator and RoI poolers of ``FasterRCNN`` / ``MaskRCNN``
expect.
"""
from collections import OrderedDict
from typing import Dict

import timm
import torch
import torch.nn as nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from . import timm_models  # noqa: F401  (registers the mmvit_* models)

__all__ = ['TimmFPNBackbone']


class TimmFPNBackbone(nn.Module):
    """The 4-level pyramid of a timm model plus a torchvision FPN, with the ``out_channels`` detectors read.

    Args:
        model_name: a timm model with ``features_only`` support, e.g. ``'mmvit_cswin_t'``.
        out_channels: width of every FPN map.
        **timm_kwargs: passed to ``timm.create_model`` (``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)``
            for the official ImageNet weights, ``drop_path_rate``, backbone arguments ...).
    """

    def __init__(self, model_name: str, out_channels: int = 256, **timm_kwargs):
        super().__init__()
        self.body = timm.create_model(model_name, features_only=True, out_indices=(0, 1, 2, 3), **timm_kwargs)
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, H, W) -> ``{'0': stride 4, '1': 8, '2': 16, '3': 32, 'pool': 64}``, each ``out_channels`` wide."""
        return self.fpn(OrderedDict((str(i), level) for i, level in enumerate(self.body(x))))

"""Adapters that turn a backbone's native feature maps into the stride 4/8/16/32 pyramid detectors expect."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ViTDet's ``LayerNorm`` for conv features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid (Li et al. 2022, Fig. 2c), the backbone half of it.

    From one stride-16 map of ``dim`` channels it builds four levels with no lateral connections:

    ========  ===================================================  ============
    stride    operation                                            channels
    ========  ===================================================  ============
    4         ConvT 2x2/2 -> LN -> GELU -> ConvT 2x2/2              dim / 4
    8         ConvT 2x2/2                                          dim / 2
    16        identity                                             dim
    32        max-pool 2x2/2                                       dim
    ========  ===================================================  ============

    The 1x1/3x3 projections to a common width are the neck's job (FPN in the shipped configs).
    ``fine_maps`` lets a backbone supply its own stride-4/8 maps instead (T2T-ViT's soft-split tokens): they are
    projected to the same widths by a 1x1 conv + LN.
    Only the branches of ``levels`` (the backbone's ``out_indices``) are built: a branch whose level is never returned
    would hold parameters without gradients, which DDP (``find_unused_parameters=False``) rejects.
    """

    def __init__(self, dim: int, fine_channels: Sequence[int] = (), levels: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        self.out_channels: Tuple[int, ...] = (dim // 4, dim // 2, dim, dim)
        self.up4: Optional[nn.Module] = None
        self.up2: Optional[nn.Module] = None
        if fine_channels:
            if 0 in levels:
                self.up4 = nn.Sequential(nn.Conv2d(fine_channels[0], dim // 4, 1, bias=False), LayerNorm2d(dim // 4))
            if 1 in levels:
                self.up2 = nn.Sequential(nn.Conv2d(fine_channels[1], dim // 2, 1, bias=False), LayerNorm2d(dim // 2))
        else:
            if 0 in levels:
                self.up4 = nn.Sequential(
                    nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2))
            if 1 in levels:
                self.up2 = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
        self.uses_fine_maps = bool(fine_channels)

    def forward(self, x: torch.Tensor, fine_maps: Sequence[torch.Tensor] = (),
                levels: Sequence[int] = (0, 1, 2, 3)) -> List[torch.Tensor]:
        """x: (B, dim, H/16, W/16); returns the requested ``levels`` (0: stride 4 ... 3: stride 32)."""
        outs = []
        for level in levels:
            if level in (0, 1):
                branch = self.up4 if level == 0 else self.up2
                if branch is None:
                    raise ValueError(f'SimpleFeaturePyramid: level {level} was not built; pass it in `levels` when '
                                     f'constructing the pyramid (the backbone\'s out_indices)')
                outs.append(branch(fine_maps[level] if self.uses_fine_maps else x))
            elif level == 2:
                outs.append(x)
            else:
                outs.append(F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True))
        return outs


class DoubleResolution(nn.Module):
    """PyramidTNT's detection adaptation: upsample one stage output x2 (stride 8..64 -> 4..32).

    Stride-2 transposed conv + BN + GELU, then 3x3 conv + BN + GELU, channels unchanged (paper, Sec. 4.3).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False), nn.BatchNorm2d(channels), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.up(x)

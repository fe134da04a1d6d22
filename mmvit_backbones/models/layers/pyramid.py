"""Adapters that turn a backbone's native feature maps into the stride 4/8/16/32 pyramid detectors expect."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d

from .patch_conv import PatchConvTranspose2d


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

    ``in_stride=8`` takes a native stride-8 map instead (e.g. ResMLP-B24/8) and applies the same operations by scale
    relative to the input, as ViTDet's ``scale_factors`` do: stride 4 ConvT 2x2/2 (dim / 2), stride 8 identity (dim),
    stride 16 max-pool 2x2/2, stride 32 max-pool 4x4/4 (dim), so the native resolution is kept, not pooled away.
    The 1x1/3x3 projections to a common width are the neck's job (FPN in the shipped configs).
    ``fine_maps`` lets a backbone supply its own stride-4/8 maps instead (T2T-ViT's soft-split tokens): they are
    projected to the same widths by a 1x1 conv + LN.
    Only the branches of ``levels`` (the backbone's ``out_indices``) are built: a branch whose level is never returned
    would hold parameters without gradients, which DDP (``find_unused_parameters=False``) rejects.
    """

    def __init__(self, dim: int, fine_channels: Sequence[int] = (), levels: Sequence[int] = (0, 1, 2, 3),
                 in_stride: int = 16):
        super().__init__()
        if in_stride not in (8, 16):
            raise ValueError(f'SimpleFeaturePyramid: in_stride must be 8 or 16 (the stride of the input map), got '
                             f'{in_stride!r}')
        if fine_channels and in_stride != 16:
            raise ValueError('SimpleFeaturePyramid: fine_channels replace the upsampling of a stride-16 map; with '
                             f'in_stride={in_stride} pass no fine_channels')
        # per level (stride 2 ** (level + 2)): log2(in_stride / stride), the number of x2 upsamplings (> 0) or of
        # halvings by max-pooling (< 0) of the input
        self.scale_log2: Tuple[int, ...] = tuple((in_stride.bit_length() - 1) - (level + 2) for level in range(4))
        # ViTDet's widths follow the operation: x4 up -> dim / 4, x2 up -> dim / 2, identity and pools -> dim
        self.out_channels: Tuple[int, ...] = tuple(dim // 2 ** max(s, 0) for s in self.scale_log2)
        ups = {self.scale_log2[level] for level in levels if self.scale_log2[level] > 0}
        self.up4: Optional[nn.Module] = None
        self.up2: Optional[nn.Module] = None
        if fine_channels:
            if 0 in levels:
                self.up4 = nn.Sequential(nn.Conv2d(fine_channels[0], dim // 4, 1, bias=False),
                                         LayerNorm2d(dim // 4, eps=1e-5))
            if 1 in levels:
                self.up2 = nn.Sequential(nn.Conv2d(fine_channels[1], dim // 2, 1, bias=False),
                                         LayerNorm2d(dim // 2, eps=1e-5))
        else:
            if 2 in ups:
                self.up4 = nn.Sequential(
                    PatchConvTranspose2d(dim, dim // 2, 2), LayerNorm2d(dim // 2, eps=1e-5), nn.GELU(),
                    PatchConvTranspose2d(dim // 2, dim // 4, 2))
            if 1 in ups:
                self.up2 = PatchConvTranspose2d(dim, dim // 2, 2)
        self.uses_fine_maps = bool(fine_channels)

    def forward(self, x: torch.Tensor, fine_maps: Sequence[torch.Tensor] = (),
                levels: Sequence[int] = (0, 1, 2, 3)) -> List[torch.Tensor]:
        """x: (B, dim, H/in_stride, W/in_stride); returns the requested ``levels`` (0: stride 4 ... 3: stride 32)."""
        outs = []
        for level in levels:
            scale_log2 = self.scale_log2[level]
            if scale_log2 > 0:
                branch = self.up4 if scale_log2 == 2 else self.up2
                if branch is None:
                    raise ValueError(f'SimpleFeaturePyramid: level {level} was not built; pass it in `levels` when '
                                     f'constructing the pyramid (the backbone\'s out_indices)')
                outs.append(branch(fine_maps[level] if self.uses_fine_maps else x))
            elif scale_log2 == 0:
                outs.append(x)
            else:  # ceil_mode keeps ceil(size / k) cells for sizes that are not multiples of k
                k = 2 ** -scale_log2
                outs.append(F.max_pool2d(x, kernel_size=k, stride=k, ceil_mode=True))
        return outs


class DoubleResolution(nn.Module):
    """PyramidTNT's detection adaptation: upsample one stage output x2 (stride 8..64 -> 4..32).

    Stride-2 transposed conv + BN + GELU, then 3x3 conv + BN + GELU, channels unchanged (paper, Sec. 4.3).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.Sequential(
            PatchConvTranspose2d(channels, channels, 2, bias=False), nn.BatchNorm2d(channels), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.up(x)

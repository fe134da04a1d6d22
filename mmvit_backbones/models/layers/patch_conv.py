"""Convolutions whose kernel equals their stride (patch embeddings, cell-wise reductions, ViTDet's 2x2 up-convs), with
a CPU backward made of two GEMMs.

A convolution with kernel == stride, no padding and no dilation sees every input value once: it is a linear layer
over non-overlapping patches, and its transposed form is a linear layer that writes non-overlapping patches. oneDNN
runs their forward well, but its CPU backward is slow on token maps (channels-last), far below the machine's GEMM
rate (e.g. ViTDet's 2x2/2 up-convolutions, DeepViT-S's 8x8/8 patch convolution); the NCHW weight gradient of
:class:`~.memory_format.ChannelsLastConv2d` does not help them. Written as GEMMs over the patch matrix the same
steps run at GEMM speed (measurements: docs/benchmarks).

:class:`PatchConv2d` / :class:`PatchConvTranspose2d` are ``nn.Conv2d`` / ``nn.ConvTranspose2d`` (same parameters,
state dict and ``isinstance``) whose forward is the unchanged aten convolution (bit-identical outputs) and whose
backward, in CPU training outside export, ``torch.compile`` and autocast, works on three matrices: the patch matrix
``P`` (one row per patch of the patched side: a conv's input, a transposed conv's output gradient; a copy in the
order of the map's own memory layout), the cell matrix ``C`` (one row per patch of the other side: a free view of
a channels-last map) and the weight ``W`` (cell channels x patch size). Then ``dW = C^T P``, and the other gradient
is ``C W`` (conv: folded back into the input's patches) or ``P W^T`` (transposed). Only the input is saved for
backward, and ``P`` is built there a block of patch rows at a time, so no copy of a whole map is ever held.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .memory_format import eager_cpu_training

# Patch rows per block of the backward: about this many values of the patched map, so that a block's patch
# matrix and GEMM operands stay in the last-level cache and the transient copies are a block, not a map.
PATCH_BLOCK_ELEMENTS = 2 ** 21


def _is_channels_last(t: torch.Tensor) -> bool:
    """Whether a (B, C, H, W) tensor's channels are its innermost axis in memory (a token map, a channels-last map)."""
    return t.stride(1) == 1 and t.shape[1] > 1


def _patch_view(t: torch.Tensor, kernel: Tuple[int, int], channels_last: bool) -> torch.Tensor:
    """A (B, C, nh*k1, nw*k2) map seen as (B, nh, nw, <patch>) without copying: the patch axes ordered (k1, k2, C)
    for a channels-last map, (C, k1, k2) otherwise (the order of the map's own memory rows)."""
    b, c, h, w = t.shape
    (k1, k2), (nh, nw) = kernel, (h // kernel[0], w // kernel[1])
    if channels_last:
        return t.permute(0, 2, 3, 1).view(b, nh, k1, nw, k2, c).permute(0, 1, 3, 2, 4, 5)
    return t.view(b, c, nh, k1, nw, k2).permute(0, 2, 4, 1, 3, 5)


def _weight_matrix(weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(O, I, k1, k2) -> (O, K), K ordered as :func:`_patch_view` orders a patch (a free view for a weight stored in
    that order, else a copy of the small weight)."""
    return (weight.permute(0, 2, 3, 1) if channels_last else weight).reshape(weight.shape[0], -1)


def _weight_from_matrix(matrix: torch.Tensor, shape: Sequence[int], channels_last: bool) -> torch.Tensor:
    """Inverse of :func:`_weight_matrix`: (O, K) -> (O, I, k1, k2)."""
    o, i, k1, k2 = shape
    return matrix.view(o, k1, k2, i).permute(0, 3, 1, 2) if channels_last else matrix.view(o, i, k1, k2)


def _cell_view(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C), one row per cell (a free view; contiguous for a channels-last map)."""
    return t.permute(0, 2, 3, 1)


class _PatchConvGEMMBackward(torch.autograd.Function):
    """aten's convolution (kernel == stride) forward; backward as GEMMs over the patch matrix (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                transposed: bool) -> torch.Tensor:
        kernel = tuple(weight.shape[2:])
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.has_bias = transposed, bias is not None
        return torch.ops.aten.convolution(x, weight, bias, list(kernel), [0, 0], [1, 1], transposed, [0, 0], 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        kernel = tuple(weight.shape[2:])
        # the patch side holds the patches (a conv's input, a transposed conv's output gradient), the cell side one
        # row per patch (the other); conv: out = P W^T, transposed: patches of out = X W
        patch_side, cell_side = (grad_out, x) if ctx.transposed else (x, grad_out)
        b, nh, nw = cell_side.shape[0], cell_side.shape[2], cell_side.shape[3]
        patch_side = patch_side[:, :, :nh * kernel[0], :nw * kernel[1]]  # a conv floors: uncovered rows/columns
        channels_last = _is_channels_last(patch_side)
        w = _weight_matrix(weight, channels_last)  # (channels of the cell side, K)
        grad_w = None
        grad_x = None
        if need_x:  # zero where no patch reads the input
            grad_x = torch.empty_like(x) if patch_side.shape == x.shape or ctx.transposed else torch.zeros_like(x)
        block = max(1, PATCH_BLOCK_ELEMENTS // max(1, patch_side[:, :, :kernel[0]].numel()))
        for start in range(0, nh, block):
            stop = min(nh, start + block)
            patch_rows = _patch_view(patch_side[:, :, start * kernel[0]:stop * kernel[0]], kernel, channels_last)
            patches = patch_rows.reshape(-1, w.shape[1])  # (b * rows * nw, K): the one copy of a block
            cells = _cell_view(cell_side[:, :, start:stop]).reshape(-1, w.shape[0])  # a view for channels-last
            if need_weight:  # (addmm with out=, not addmm_: torch.utils.flop_counter counts only the former)
                grad_w = cells.t() @ patches if grad_w is None else torch.addmm(grad_w, cells.t(), patches, out=grad_w)
            if need_x and ctx.transposed:
                _cell_view(grad_x[:, :, start:stop]).copy_((patches @ w.t()).view(b, stop - start, nw, -1))
            elif need_x:
                _patch_view(grad_x[:, :, start * kernel[0]:stop * kernel[0], :nw * kernel[1]], kernel,
                            channels_last).copy_((cells @ w).view(patch_rows.shape))
        grad_weight = _weight_from_matrix(grad_w, weight.shape, channels_last) if need_weight else None
        grad_bias = grad_out.sum(dim=(0, 2, 3)) if need_bias and ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None


def _takes_gemm_backward(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether this call takes the GEMM backward: eager CPU training with something to differentiate."""
    return eager_cpu_training(x) and (x.requires_grad or conv.weight.requires_grad)


class PatchConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size)``: a linear map of non-overlapping
    patches, with the GEMM backward on CPU (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _takes_gemm_backward(self, x):
            return super().forward(x)
        return _PatchConvGEMMBackward.apply(x, self.weight, self.bias, False)


class PatchConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=kernel_size)``: every input cell writes
    its own output patch, with the GEMM backward on CPU (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=kernel_size, bias=bias)

    def forward(self, x: torch.Tensor, output_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if output_size is not None or not _takes_gemm_backward(self, x):
            return super().forward(x, output_size)
        return _PatchConvGEMMBackward.apply(x, self.weight, self.bias, True)

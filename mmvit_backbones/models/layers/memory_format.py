"""Channels-last convolution weights: convolutions on token maps without layout copies.

Transformer backbones keep their activations as tokens ``(B, N, C)``; a convolution between blocks (depthwise
convs in the feed-forward, spatial reductions, patch merging) sees them as ``tokens.transpose(1, 2).reshape(B, C, H,
W)``, a free view whose strides are exactly the channels-last (NHWC) layout. With a default (NCHW) weight, PyTorch's
CPU convolution (oneDNN) then copies such an input to NCHW and returns an NCHW output, which the next
``flatten(2).transpose(1, 2)`` turns back into strided tokens: two full-size copies per convolution. With the weight
stored channels-last the convolution runs in NHWC on the view as it is and returns an NHWC map whose token view is
contiguous again. For plain NCHW inputs (images) the input is reordered once and the following convolutions stay in
NHWC, which is also oneDNN's fast layout for the 3x3 convs of a ResNet at detection sizes and cuDNN's for mixed
precision.

:func:`channels_last_conv_weights` converts the weights in place once at construction. The layout survives
``load_state_dict`` (an in-place copy), ``.to(device)``, ``.cuda()`` and optimizer steps; the values, parameter names
and checkpoints are unchanged.

One part of NHWC is slow on CPU: oneDNN's **weight gradient** of a dense convolution with a spatial kernel (3x3, 2x2
transposed, strided), several times slower than in NCHW, while the input gradient and the forward are faster in NHWC,
and 1x1 and depthwise convolutions are fast in both. Such convolutions therefore become :class:`ChannelsLastConv2d` /
:class:`ChannelsLastConvTranspose2d` (same parameters and state dict; ``isinstance`` of ``nn.Conv2d`` /
``nn.ConvTranspose2d``): on CPU, when the weight needs a gradient and the input map is large
(:data:`SPLIT_MIN_ELEMENTS`), the backward computes the input gradient in NHWC and the weight gradient from NCHW copies
of the input and the output gradient (the same oneDNN kernels, bit-identical results). Everything else (CUDA, inference,
frozen weights, small maps, export, ``torch.compile``, autocast) runs the plain convolution.

:func:`tokens_to_map` is that token -> map view, shared by the token backbones.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .traceable import is_exporting


class _WeightGradInNCHW(torch.autograd.Function):
    """``aten.convolution`` whose backward takes the input gradient in the tensors' own layout and the weight gradient
    in NCHW (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                padding: List[int], dilation: List[int], transposed: bool, output_padding: List[int],
                groups: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, transposed, output_padding, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding,
                                          groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x, _, grad_bias = torch.ops.aten.convolution_backward(
            grad_out, x, weight, ctx.bias_sizes, *ctx.conv, [need_x, False, need_bias])
        grad_weight = None
        if need_weight:  # NCHW: the weight gradient's fast layout (the result is laid out like an NCHW weight;
            # the parameter's own channels-last layout is restored when it is accumulated)
            grad_weight = torch.ops.aten.convolution_backward(
                grad_out.contiguous(), x.contiguous(), weight.contiguous(), None, *ctx.conv,
                [False, True, False])[1]
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None


# Input values per image from which the split backward pays: below ~1M (e.g. 64 channels at 128x128) the NHWC weight
# gradient is no slower and the two copies would cost more than they save (docs/benchmarks).
SPLIT_MIN_ELEMENTS = 2 ** 20


def eager_cpu_training(x: torch.Tensor) -> bool:
    """Whether a convolution on ``x`` may take one of the package's own CPU backward functions: eager CPU training
    in full precision. Export and compilation trace the plain convolution (checked first: size comparisons on traced
    or symbolic sizes would become constants or guards); under CPU autocast the plain convolution runs in the lower
    precision, which a custom function calling ``aten.convolution`` would skip."""
    return (not is_exporting() and not torch.compiler.is_compiling() and torch.is_grad_enabled()
            and x.device.type == 'cpu' and not torch.is_autocast_enabled('cpu') and x.dim() == 4 and x.shape[0] > 0)


def _weight_grad_in_nchw(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether this call takes the split backward: eager CPU training of the weight on a large map."""
    return eager_cpu_training(x) and conv.weight.requires_grad and x[0].numel() >= SPLIT_MIN_ELEMENTS


class ChannelsLastConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding given as numbers) whose CPU backward takes the weight gradient in NCHW."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _weight_grad_in_nchw(self, x):
            return super().forward(x)
        return _WeightGradInNCHW.apply(x, self.weight, self.bias, list(self.stride), list(self.padding),
                                       list(self.dilation), False, [0, 0], self.groups)


class ChannelsLastConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose CPU backward takes the weight gradient in NCHW."""

    def forward(self, x: torch.Tensor, output_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if not _weight_grad_in_nchw(self, x):
            return super().forward(x, output_size)
        output_padding = self._output_padding(x, output_size, list(self.stride), list(self.padding),
                                              list(self.kernel_size), 2, list(self.dilation))
        return _WeightGradInNCHW.apply(x, self.weight, self.bias, list(self.stride), list(self.padding),
                                       list(self.dilation), True, list(output_padding), self.groups)


def _split_backward_class(m: nn.Module) -> Optional[type]:
    """The class a convolution becomes when its NHWC weight gradient is the slow kind, else None."""
    if m.groups != 1 or all(k == 1 for k in m.kernel_size) or m.padding_mode != 'zeros' \
            or isinstance(m.padding, str):  # depthwise / 1x1: fast in NHWC; other paddings: plain forward
        return None
    return {nn.Conv2d: ChannelsLastConv2d, nn.ConvTranspose2d: ChannelsLastConvTranspose2d}.get(type(m))


def channels_last_conv_weights(module: nn.Module, split_backward: bool = True) -> nn.Module:
    """Store the weight of every 2-D (transposed) convolution inside ``module`` channels-last, in place; with
    ``split_backward`` dense convolutions with a spatial kernel take their CPU weight gradient in NCHW (module
    docstring). Its NCHW copies are transient but add up to twice a conv's input map to the memory of that moment:
    where that map is the model's largest and its backward comes at the memory peak, pass False."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.data = m.weight.data.to(memory_format=torch.channels_last)
            new_class = _split_backward_class(m) if split_backward else None
            if new_class is not None:
                m.__class__ = new_class  # same parameters, buffers and hooks; only forward differs
    return module


def tokens_to_map(tokens: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) row-major tokens -> (B, C, H, W): a free view with channels-last strides (module docstring)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], hw[0], hw[1])

"""Channels-last convolution weights: convolutions on token maps without layout copies.

Transformer backbones keep their activations as tokens ``(B, N, C)``; a convolution between blocks (depthwise
convs in the feed-forward, spatial reductions, patch merging) sees them as ``tokens.transpose(1, 2).reshape(B, C, H,
W)``, a free view whose strides are exactly the channels-last (NHWC) layout. With a default (NCHW) weight, PyTorch's
CPU convolution (oneDNN) then copies such an input to NCHW and returns an NCHW output, which the next
``flatten(2).transpose(1, 2)`` turns back into strided tokens: two full-size copies per convolution (24% of Shunted-S's
forward at 800x1344). With the weight stored channels-last the convolution runs in NHWC on the view as it is and
returns an NHWC map whose token view is contiguous again. For plain NCHW inputs (images) the input is reordered once
and the following convolutions stay in NHWC, which is also oneDNN's fast layout (2-3x faster than NCHW for the 3x3
convs of a ResNet at detection sizes) and cuDNN's for mixed precision.

:func:`channels_last_conv_weights` converts the weights in place once at construction. The layout survives
``load_state_dict`` (an in-place copy), ``.to(device)``, ``.cuda()`` and optimizer steps; the values, parameter names
and checkpoints are unchanged.
"""
import torch
import torch.nn as nn


def channels_last_conv_weights(module: nn.Module) -> nn.Module:
    """Store the weight of every 2-D (transposed) convolution inside ``module`` channels-last, in place."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.data = m.weight.data.to(memory_format=torch.channels_last)
    return module

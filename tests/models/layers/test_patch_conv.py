"""Convolutions with kernel == stride: aten's forward, and a CPU backward of two GEMMs that gives aten's gradients
(float64: to rounding) in every layout, with frozen weights, inputs without gradient and uncovered border rows."""
import copy
import itertools

import pytest
import torch
import torch.nn as nn

from mmvit_backbones.models import DeepViT, PlainViT, ShuntedTransformer
from mmvit_backbones.models.layers import PatchConv2d, PatchConvTranspose2d, SimpleFeaturePyramid
from mmvit_backbones.testing.contract import assert_same_gradients


def _plain_copy(conv: nn.Module) -> nn.Module:
    plain = copy.deepcopy(conv)
    plain.__class__ = nn.ConvTranspose2d if isinstance(conv, nn.ConvTranspose2d) else nn.Conv2d
    return plain


@pytest.mark.parametrize('transposed,channels_last,bias,kernel,size', [
    (t, cl, b, k, s) for t, cl, b, k, s in itertools.product(
        (False, True), (False, True), (False, True), (2, (2, 4)), ((8, 12), (9, 14))) if not (t and s == (9, 14))])
def test_gradients_equal_aten(transposed, channels_last, bias, kernel, size):
    torch.manual_seed(0)
    conv = (PatchConvTranspose2d if transposed else PatchConv2d)(6, 5, kernel, bias=bias).double()
    plain = _plain_copy(conv)
    if channels_last:  # token maps and channels-last weights: the layout the backbones run in
        for m in (conv, plain):
            m.weight.data = m.weight.data.to(memory_format=torch.channels_last)
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    out, expected = conv(x), plain(x)
    assert type(out.grad_fn).__name__ == '_PatchConvGEMMBackwardBackward'
    assert torch.equal(out, expected)  # the forward is aten's own
    weights = torch.randn_like(expected)
    got = torch.autograd.grad(out, [x, *conv.parameters()], weights)
    want = torch.autograd.grad(expected, [x, *plain.parameters()], weights)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    if not transposed and size == (9, 14):  # the rows/columns no patch covers get a zero gradient
        k1, k2 = (kernel, kernel) if isinstance(kernel, int) else kernel
        assert got[0][:, :, 9 // k1 * k1:].abs().sum() == 0 and got[0][:, :, :, 14 // k2 * k2:].abs().sum() == 0


@pytest.mark.parametrize('transposed', [False, True])
def test_frozen_weight_and_input_without_gradient(transposed):
    torch.manual_seed(0)
    conv = (PatchConvTranspose2d if transposed else PatchConv2d)(4, 3, 2).double()
    plain = _plain_copy(conv)
    x = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    # an image into a patch embedding: only the parameters need gradients
    got = torch.autograd.grad(conv(x).sum(), list(conv.parameters()))
    want = torch.autograd.grad(plain(x).sum(), list(plain.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    # a frozen layer inside a trained network: only the input gradient
    conv.requires_grad_(False)
    plain.requires_grad_(False)
    x.requires_grad_()
    torch.testing.assert_close(torch.autograd.grad(conv(x).sum(), x)[0], torch.autograd.grad(plain(x).sum(), x)[0],
                               rtol=1e-12, atol=1e-12)
    # nothing to differentiate (inference): the plain convolution, no custom node
    with torch.no_grad():
        assert torch.equal(conv(x), plain(x))


@pytest.mark.parametrize('transposed', [False, True])
def test_autocast_keeps_the_lower_precision_convolution(transposed):
    conv = (PatchConvTranspose2d if transposed else PatchConv2d)(4, 3, 2)
    x = torch.randn(1, 4, 6, 8, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16  # what nn.Conv2d / nn.ConvTranspose2d give under autocast
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32


@pytest.mark.parametrize('build', [
    lambda: PlainViT(arch=dict(embed_dims=32, depth=1, num_heads=2), pretrain_img_size=64),
    lambda: DeepViT(arch=dict(embed_dims=36, depth=2, num_heads=3, num_reattention_blocks=1, cnn_stem=True,
                              scale_adjustment=0.5), window_block_indexes=()),
    lambda: ShuntedTransformer(arch=dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 4),
                                         mlp_ratios=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), num_conv=0))])
def test_backbone_gradients_equal_those_of_aten(build):
    """A training step of the backbones that use these convolutions (patch embeddings, Shunted's spatial reductions,
    the simple pyramid's up-convs) gives aten's gradients, in float64 to rounding."""
    torch.manual_seed(0)
    model = build().double().train()
    patch_convs = [m for m in model.modules() if isinstance(m, (PatchConv2d, PatchConvTranspose2d))]
    assert patch_convs
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, (PatchConv2d, PatchConvTranspose2d)):
            m.__class__ = nn.ConvTranspose2d if isinstance(m, nn.ConvTranspose2d) else nn.Conv2d
    assert_same_gradients(model, reference, torch.randn(1, 3, 72, 100, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_simple_pyramid_state_dict_is_unchanged():
    """The classes only change the backward: names and shapes of ViTDet's pyramid are those of nn.ConvTranspose2d."""
    pyramid = SimpleFeaturePyramid(8)
    assert all(isinstance(m, nn.ConvTranspose2d) for m in (pyramid.up4[0], pyramid.up4[3], pyramid.up2))
    assert {k: v.shape for k, v in pyramid.state_dict().items()} == {
        'up4.0.weight': (8, 4, 2, 2), 'up4.0.bias': (4,), 'up4.1.weight': (4,), 'up4.1.bias': (4,),
        'up4.3.weight': (4, 2, 2, 2), 'up4.3.bias': (2,), 'up2.weight': (8, 4, 2, 2), 'up2.bias': (4,)}

"""The memory layouts the fast paths rely on (no timing here): channels-last conv weights that survive loading and
give the same outputs and gradients (the weight gradient taken in NCHW), attention inputs that take SDPA's fused CPU
kernel, and a package import without mmcv."""
import copy
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.profiler import profile

from mmvit_backbones.models import BoTNet, GCViT, PyramidTNT, ShuntedTransformer
from mmvit_backbones.models.layers import channels_last_conv_weights, memory_format
from mmvit_backbones.models.layers.memory_format import ChannelsLastConv2d, ChannelsLastConvTranspose2d
from mmvit_backbones.testing.contract import assert_same_gradients

TINY_SHUNTED = dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 4), mlp_ratios=(2, 2, 2, 2),
                    sr_ratios=(8, 4, 2, 1), num_conv=0)
TINY_BOTNET = dict(stem_channels=(8, 16), depths=(1, 1, 2, 1), channels=(16, 32, 48, 64),
                   attn_blocks=((), (), (1, ), (0, )), num_heads=2, img_size=64)
TINY_PTNT = dict(depths=(1, 1, 1, 1), outer_dims=(16, 32, 48, 48), inner_dims=(2, 4, 6, 6), outer_heads=(2, 2, 2, 2),
                 inner_heads=(1, 1, 1, 1))


def _convs(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _channels_last(weight: torch.Tensor) -> bool:
    # (C, 1, k, k) depthwise weights are contiguous in both layouts: compare the strides channels-last storage has
    return weight.stride() == weight.to(memory_format=torch.channels_last).stride()


@pytest.mark.parametrize('build', [
    lambda: ShuntedTransformer(arch=TINY_SHUNTED), lambda: BoTNet(arch=TINY_BOTNET, zero_init_residual=False),
    lambda: PyramidTNT(arch=TINY_PTNT, pretrain_img_size=64), lambda: GCViT(arch='xxt')])
def test_channels_last_weights_survive_loading_and_keep_outputs(build):
    torch.manual_seed(0)
    model = build().eval()
    assert _convs(model) and all(_channels_last(m.weight) for m in _convs(model))
    reference = build().eval()
    for m in _convs(reference):  # the same weights stored NCHW: the layout must not change the result
        m.weight.data = m.weight.data.contiguous()
    reference.load_state_dict(model.state_dict())
    model.load_state_dict(reference.state_dict())  # an in-place copy from NCHW tensors keeps the layout
    assert all(_channels_last(m.weight) for m in _convs(model))
    x = torch.randn(1, 3, 72, 100)
    with torch.no_grad():
        for ours, ref in zip(model(x), reference(x)):
            assert ours.shape == ref.shape
            torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_helper_converts_only_convolution_weights():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Linear(4, 4))
    model.register_parameter('table', nn.Parameter(torch.randn(1, 2, 3, 4)))  # e.g. a dense 4-D attention bias
    channels_last_conv_weights(model)
    assert _channels_last(model[0].weight) and _channels_last(model[1].weight)
    assert not _channels_last(model[0].weight.contiguous())  # the check itself tells the layouts apart
    assert model.table.is_contiguous()


def test_helper_splits_the_backward_of_dense_spatial_convolutions_only():
    """3x3 / 2x2-transposed dense convs get the NCHW weight gradient; 1x1 and depthwise (fast in NHWC), string
    paddings and other padding modes keep nn.Conv2d; parameters and state dict are unchanged."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 8, 2, stride=2), nn.Conv2d(8, 8, 1),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 3, padding='same'),
                          nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect'))
    keys = list(model.state_dict())
    channels_last_conv_weights(model)
    assert [type(m) for m in model] == [ChannelsLastConv2d, ChannelsLastConvTranspose2d] + [nn.Conv2d] * 4
    assert list(model.state_dict()) == keys and isinstance(model[0], nn.Conv2d)
    plain = channels_last_conv_weights(nn.Sequential(nn.Conv2d(3, 8, 3)), split_backward=False)
    assert type(plain[0]) is nn.Conv2d and _channels_last(plain[0].weight)


@pytest.mark.parametrize('make, kwargs', [
    (lambda: nn.Conv2d(6, 8, 3, stride=2, padding=1), {}),
    (lambda: nn.Conv2d(6, 8, 3, padding=2, dilation=2, bias=False), {}),
    (lambda: nn.ConvTranspose2d(6, 8, 2, stride=2), {}),
    (lambda: nn.ConvTranspose2d(6, 8, 3, stride=2, padding=1), dict(output_size=(14, 16)))])
def test_split_backward_equals_the_convolution_backward(make, kwargs, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 8, requires_grad=True)
    conv = channels_last_conv_weights(make())
    assert type(conv(x, **kwargs).grad_fn).__name__ == 'ConvolutionBackward0'  # a small map: the plain backward
    monkeypatch.setattr(memory_format, 'SPLIT_MIN_ELEMENTS', 0)
    reference = make()
    conv = channels_last_conv_weights(copy.deepcopy(reference))
    out, expected = conv(x, **kwargs), reference(x, **kwargs)
    assert type(out.grad_fn).__name__ == '_WeightGradInNCHWBackward'
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(expected)
    got = torch.autograd.grad(out, [x, *conv.parameters()], weights)
    want = torch.autograd.grad(expected, [x, *reference.parameters()], weights)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # autocast keeps the plain, lower-precision convolution
        assert conv(x, **kwargs).dtype == torch.bfloat16
    conv.weight.requires_grad_(False)  # a frozen weight (and inference) runs the plain convolution
    assert type(conv(x, **kwargs).grad_fn).__name__ == 'ConvolutionBackward0'


@pytest.mark.parametrize('build', [
    lambda: ShuntedTransformer(arch=TINY_SHUNTED), lambda: BoTNet(arch=TINY_BOTNET, zero_init_residual=False),
    lambda: PyramidTNT(arch=TINY_PTNT, pretrain_img_size=64), lambda: GCViT(arch='xxt')])
def test_training_gradients_equal_those_of_the_plain_convolutions(build, monkeypatch):
    """A training step of each backbone gives the gradients aten's convolution backward gives for the same
    (channels-last) weights: the split backward only changes where the weight gradient is computed."""
    monkeypatch.setattr(memory_format, 'SPLIT_MIN_ELEMENTS', 0)  # every conv of these tiny models takes it
    torch.manual_seed(0)
    model = build().train()
    assert any(isinstance(m, ChannelsLastConv2d) for m in model.modules())
    reference = copy.deepcopy(model)
    for m in _convs(reference):  # (kernel == stride convolutions keep their own GEMM backward: test_patch_conv.py)
        if isinstance(m, (ChannelsLastConv2d, ChannelsLastConvTranspose2d)):
            m.__class__ = nn.ConvTranspose2d if isinstance(m, nn.ConvTranspose2d) else nn.Conv2d
    assert_same_gradients(model.double(), reference.double(), torch.randn(2, 3, 72, 100, dtype=torch.float64),
                          rtol=1e-9, atol=1e-12)


def _attention_kernels(model: nn.Module, x: torch.Tensor):
    with torch.no_grad(), profile() as prof:
        model(x)
    names = {e.name for e in prof.events()}
    return {n for n in names if 'scaled_dot_product' in n and n != 'aten::scaled_dot_product_attention'}


@pytest.mark.parametrize('build', [lambda: BoTNet(arch=TINY_BOTNET, zero_init_residual=False),
                                   lambda: ShuntedTransformer(arch=TINY_SHUNTED),
                                   lambda: PyramidTNT(arch=TINY_PTNT, pretrain_img_size=64)])
def test_inference_attention_takes_the_fused_cpu_kernel(build):
    """q/k/v with unit stride along the head dimension and contiguous biases: no fallback to the unfused path."""
    kernels = _attention_kernels(build().eval(), torch.randn(1, 3, 96, 128))
    assert kernels == {'aten::_scaled_dot_product_flash_attention_for_cpu'}, kernels


def test_botnet_relative_logits_build_the_bias_without_copying_it():
    """The (N, N) relative-logit bias is written once, contiguous: its reshape to (B, heads, N, N) is a view."""
    mhsa = BoTNet(arch=TINY_BOTNET).stages[3][0].mhsa
    q = torch.randn(1, 2, 6 * 10, mhsa.dim_head)
    with profile(record_shapes=True) as prof:
        bias = mhsa.relative_logits(q, (6, 10))
    assert bias.shape == (1, 2, 60, 60) and bias.is_contiguous()
    full_copies = [e.name for e in prof.events() if e.name in ('aten::copy_', 'aten::clone')
                   and any(s and math.prod(s) == bias.numel() for s in e.input_shapes)]
    assert not full_copies, full_copies


def test_package_imports_without_mmcv_mmdet_mmseg():
    code = ('import sys, mmvit_backbones; from mmengine.registry import MODELS; '
            'MODELS.build(dict(type="BoTNet", arch=dict(stem_channels=(8,), depths=(1, 1, 1, 1), '
            'channels=(16, 32, 48, 64), attn_blocks=((), (), (), (0,)), num_heads=2, img_size=64))); '
            'print(sorted({m.split(".")[0] for m in sys.modules} & {"mmcv", "mmdet", "mmseg"}))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == '[]'

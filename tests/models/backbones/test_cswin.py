"""CSWin Transformer backbone: pyramid at any size, stripe padding as the official segmentation backbone, parity
(classification and segmentation fixtures), checkpoints (ImageNet, EMA/raw, mmseg UPerNet), training switches."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

import mmvit_backbones.models.backbones.cswin as cswin_module
from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models import CSWin
from mmvit_backbones.models.backbones.cswin import CSWinAttention
from mmvit_backbones.testing.contract import (
    LARGE_SIZES,
    ODD_SIZES,
    assert_bad_inputs_rejected,
    assert_builds_from_both_registries,
    assert_checkpoint_forms,
    assert_foreign_checkpoint_error,
    assert_frozen,
    assert_layer_depths,
    assert_missing_checkpoint_error,
    assert_naive_attention_matches,
    assert_parity,
    assert_pyramid,
    assert_with_cp_equivalent,
    clone_build,
    spy_calls,
)
from mmvit_backbones.testing.parity import fixture_input, official_state_dict
from mmvit_backbones.testing.parity.cswin import arch_from_official_keys

FIXTURE = 'cswin_tiny_224.pt'
SEG_FIXTURE = 'cswin_tiny_seg_256x320.pt'
# every piece of the official design (stripes of width 1, 2 and 3 with two branches, the global last stage)
TINY = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[2, 2, 4, 4], split_size=[1, 2, 3, 3], mlp_ratio=2.0)
build = clone_build(CSWin, arch=TINY, drop_path_rate=0.1)


@pytest.fixture(scope='module')
def seg_fixture() -> dict:
    """The segmentation-backbone fixture (next to FIXTURE)."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'data', 'parity', SEG_FIXTURE)
    return torch.load(path, map_location='cpu', weights_only=True)


# ------------------------------------------------------------------------------------------ reference attention
def _reference_branch(qkv: torch.Tensor, conv: torch.nn.Conv2d, width: int, vertical: bool, mask: bool,
                      heads: int) -> torch.Tensor:
    """Textbook stripe attention of one branch, one stripe at a time, written from the official segmentation
    backbone's description: zero-pad the projected q/k/v along the stripe axis (``pad // 2`` first), LePE on each
    padded stripe, softmax over all keys of the stripe (``mask``: over the real ones only), crop.

    qkv: (3, H, W, C) of one image -> (H, W, C).
    """
    if vertical:  # vertical stripes = horizontal stripes of the transposed map, LePE kernel transposed
        out = _reference_branch(qkv.transpose(1, 2), _transposed(conv), width, False, mask, heads)
        return out.transpose(0, 1)
    _, h, w, c = qkv.shape
    pad = (-h) % width
    top = pad // 2
    padded = F.pad(qkv, (0, 0, 0, 0, top, pad - top))
    real = torch.zeros(h + pad, dtype=torch.bool)
    real[top:top + h] = True
    rows = []
    for s in range(0, h + pad, width):
        q, k, v = padded[:, s:s + width].reshape(3, width * w, heads, c // heads).permute(0, 2, 1, 3)
        logits = q @ k.transpose(-1, -2) * (c // heads) ** -0.5  # (heads, L, L)
        if mask:
            keep = real[s:s + width, None].expand(width, w).reshape(-1)
            logits = logits.masked_fill(~keep, float('-inf'))
        attn = logits.softmax(-1) @ v  # (heads, L, d)
        lepe = conv(padded[2, s:s + width].permute(2, 0, 1)[None])[0]  # (C, width, W)
        rows.append(attn.permute(1, 0, 2).reshape(width, w, c) + lepe.permute(1, 2, 0))
    return torch.cat(rows)[top:top + h]


def _transposed(conv: torch.nn.Conv2d) -> torch.nn.Conv2d:
    new = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, groups=conv.groups)
    new.weight.data.copy_(conv.weight.data.transpose(-1, -2))
    new.bias.data.copy_(conv.bias.data)
    return new


def _reference_attention(attn: CSWinAttention, x: torch.Tensor, mask: bool) -> torch.Tensor:
    b, h, w, c = x.shape
    qkv = attn.qkv(x).reshape(b, h, w, 3, c).permute(0, 3, 1, 2, 4)  # (B, 3, H, W, C)
    out = []
    for i in range(b):
        if attn.num_branches == 1:
            out.append(_reference_branch(qkv[i], attn.lepe[0], h, False, mask, attn.heads))
        else:
            half = c // 2
            out.append(torch.cat([
                _reference_branch(qkv[i, ..., :half], attn.lepe[0], attn.split_size, True, mask, attn.heads),
                _reference_branch(qkv[i, ..., half:], attn.lepe[1], attn.split_size, False, mask, attn.heads)], -1))
    return attn.proj(torch.stack(out))


@pytest.mark.parametrize('mask', [False, True], ids=['official', 'masked'])
@pytest.mark.parametrize('hw', [(7, 9), (5, 5), (6, 4), (2, 11)])
def test_stripe_attention_matches_textbook_padding(hw, mask):
    """Both branches, widths that do and do not divide the grid (padding 1..4, odd and even), global branch."""
    torch.manual_seed(0)
    for width, global_attn in ((3, False), (4, False), (1, False), (2, True)):
        attn = CSWinAttention(16, 4, width, global_attn=global_attn, mask_padded_keys=mask).eval()
        x = torch.randn(2, *hw, 16)
        with torch.no_grad():
            torch.testing.assert_close(attn(x), _reference_attention(attn, x, mask), rtol=1e-4, atol=1e-5)


def test_masking_changes_only_padded_stripes():
    torch.manual_seed(0)
    official = CSWinAttention(16, 4, 3, global_attn=False).eval()
    masked = CSWinAttention(16, 4, 3, global_attn=False, mask_padded_keys=True).eval()
    masked.load_state_dict(official.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 6, 9, 16)  # multiples of 3: no padding, identical
        torch.testing.assert_close(official(x), masked(x))
        x = torch.randn(1, 7, 9, 16)  # H padded for the horizontal stripes: padded keys dilute the softmax
        assert (official(x) - masked(x)).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------------- shapes
def test_pyramid_odd_and_large_sizes():
    assert_pyramid(build(), ODD_SIZES, batch=2)
    assert_pyramid(build(out_indices=(1, 3), mask_padded_keys=True), ODD_SIZES + LARGE_SIZES)


def test_empty_batch():
    model = build().eval()
    outs = model(torch.randn(0, 3, 75, 101))
    assert [tuple(o.shape) for o in outs] == [(0, 16, 19, 26), (0, 32, 10, 13), (0, 64, 5, 7), (0, 128, 3, 4)]


def test_official_variants(fixture):
    def classifier_params(arch: str) -> int:  # ours + the official final norm and 1000-class head
        with torch.device('meta'):
            model = CSWin(arch=arch, out_indices=(3, ))
        c = model.out_channels[3]
        return sum(p.numel() for n, p in model.named_parameters() if not n.startswith('norm3')) + 1002 * c + 1000
    assert classifier_params('t') == sum(math.prod(shape) for _, shape, _ in fixture['keys'])  # 22.32M
    # README (rounded): S 35M, B 78M, L 173M
    for arch, params in (('s', 35), ('b', 78), ('l', 173)):
        assert abs(classifier_params(arch) / 1e6 - params) < 1, arch
    with torch.device('meta'):
        assert CSWin(arch='t').out_channels == (64, 128, 256, 512)
        assert CSWin(arch='b').out_channels == (96, 192, 384, 768)
    assert tuple(CSWin.resolve_arch('base-384')['split_size']) == (1, 2, 12, 12)
    assert CSWin(arch=TINY, split_size=(1, 2, 5, 5)).stages[2].blocks[0].attn.split_size == 5


def test_padding_to_stride_4():
    """Sizes that are not multiples of 4 are zero-padded at the bottom/right before the stem."""
    model = build().eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 70, 93)
        ours = model.forward_stages(x)
        padded = model.forward_stages(F.pad(x, (0, 3, 0, 2)), pad_to_stride=False)
        official = model.forward_stages(x, pad_to_stride=False)  # the official stem floors: 17 x 23
    for i in range(4):
        torch.testing.assert_close(ours[i], padded[i])
    assert ours[0].shape[1:3] == (18, 24) and official[0].shape[1:3] == (17, 23)


def test_all_attention_goes_through_shared_core(monkeypatch):
    calls = spy_calls(monkeypatch, 'attention', cswin_module, record=lambda q, k, v, bias=None, **kw: q.shape)
    assert_naive_attention_matches(build().eval(), torch.randn(1, 3, 64, 96))
    # per forward: two branches in each block of stages 0-2, one (global) in stage 3
    assert len(calls) == 2 * (2 * (1 + 1 + 2) + 1)
    assert calls[-1] == (1, 4, 2 * 3, 32)  # global: (B, heads, 2x3 tokens, d)


# --------------------------------------------------------------------------------------------------- registries
def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='CSWin', arch=TINY))


# ------------------------------------------------------------------------------------------------------- parity
def test_parity_classification_fixture(fixture):
    assert_parity(fixture, ok=('stage0', 'stage1', 'stage2', 'stage3'))


def test_parity_segmentation_fixture_with_stripe_padding(seg_fixture):
    """256x320: stage 2 (16x20, stripes 7) pads W 0/1 and H 2/3 without a mask; out_i after norm{i}."""
    model = assert_parity(seg_fixture, skipped=(), ok=('out0', 'out1', 'out2', 'out3'))
    assert not model.mask_padded_keys
    # the official UPerNet layout filled the output norms (norm1..4 -> norm0..3)
    official = official_state_dict(seg_fixture)
    torch.testing.assert_close(model.norm2.weight, official['norm3.weight'])


def test_masking_padded_keys_changes_the_padded_stage_only(seg_fixture):
    official = official_state_dict(seg_fixture)
    x = fixture_input(seg_fixture)
    outs = []
    for mask in (False, True):
        model = CSWin(arch='t', mask_padded_keys=mask)
        load_pretrained(model, official)
        with torch.no_grad():
            outs.append(model.eval()(x))
    for i in (0, 1):  # 64x80 and 32x40 are multiples of the stripes 1 and 2
        torch.testing.assert_close(outs[0][i], outs[1][i])
    assert (outs[0][2] - outs[1][2]).abs().max() > 1e-3


def test_parity_adapter_reads_other_variants(fixture, seg_fixture):
    def shapes_of(arch, seg=False):
        with torch.device('meta'):
            model = CSWin(arch=arch)
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        inverse = {}
        for key, shape in ours.items():  # our names back to the official ones
            key = key.replace('stem.conv.', 'stage1_conv_embed.0.').replace('stem.norm.', 'stage1_conv_embed.2.')
            for i in range(4):
                key = key.replace(f'stages.{i}.blocks.', f'stage{i + 1}.').replace(f'stages.{i}.downsample.',
                                                                                  f'merge{i}.')
            inverse[key.replace('attn.lepe.', 'attns.').replace('attn.', '')] = shape
        return inverse
    def same(a: dict, b: dict) -> bool:  # lists and tuples alike
        return {k: tuple(v) if isinstance(v, list) else v for k, v in a.items()} == \
            {k: tuple(v) if isinstance(v, list) else v for k, v in b.items()}

    arch = arch_from_official_keys({k: tuple(s) for k, s, _ in fixture['keys']}, fixture['variant'])
    assert same(arch, dict(CSWin.resolve_arch('t'), dims=[64, 128, 256, 512]))
    arch = arch_from_official_keys({k: tuple(s) for k, s, _ in seg_fixture['keys']}, seg_fixture['build_call'])
    assert same(arch, dict(CSWin.resolve_arch('t'), dims=[64, 128, 256, 512]))
    for name, variant in (('b-384', 'CSWin_96_24322_base_384'), ('l', 'CSWin_144_24322_large_224'),
                          ('s', 'CSWin(embed_dim=64, depth=[2,4,32,2], num_heads=[2,4,8,16], split_size=[1,2,7,7])')):
        want = CSWin.resolve_arch(name)
        got = arch_from_official_keys(shapes_of(name), variant)
        assert same(got, dict(want, dims=[want['embed_dims'] * 2 ** i for i in range(4)])), name
    with pytest.raises(ValueError, match='heads'):
        arch_from_official_keys(shapes_of('t'), 'some_model')


# -------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official, tmp_path):
    assert_checkpoint_forms(clone_build(CSWin, arch='t'), official, str(tmp_path))


def test_ema_or_raw_weights(official, tmp_path):
    raw = {k: v + 1 for k, v in official.items()}
    path = str(tmp_path / 'cswin_tiny_224.pth')
    torch.save({'epoch': 300, 'state_dict': raw, 'state_dict_ema': official}, path)
    key, ours = 'stages.2.blocks.3.attn.qkv.weight', 'stage3.3.qkv.weight'
    for choice, expected in (('ema', official[ours]), ('raw', raw[ours])):
        model = CSWin(arch='t', checkpoint_weights=choice, init_cfg=dict(type='Pretrained', checkpoint=path))
        model.init_weights()
        assert torch.equal(model.state_dict()[key], expected), choice
    assert model.init_cfg == dict(type='Pretrained', checkpoint=path)  # restored after loading


def test_upernet_checkpoint_and_converter(seg_fixture, official, tmp_path):
    seg = official_state_dict(seg_fixture)
    path = str(tmp_path / 'upernet_cswin_tiny.pth')  # mmseg 0.x layout
    state = {f'backbone.{k}': v for k, v in seg.items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    torch.save({'meta': {'iter': 160000}, 'state_dict': state}, path)
    model = CSWin(arch='t', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    for i in range(4):
        assert torch.equal(model.state_dict()[f'norm{i}.bias'], seg[f'norm{i + 1}.bias'])
    once = CSWin.convert_checkpoint(official)
    assert not any(k.startswith(('head.', 'norm.', 'stage1', 'merge')) for k in once)
    twice = CSWin.convert_checkpoint(once)
    assert twice.keys() == once.keys() and all(twice[k] is once[k] for k in once)
    report = load_pretrained(CSWin(arch='t'), official)
    assert not report.missing and not report.unexpected


def test_checkpoint_errors():
    assert_missing_checkpoint_error(build)
    assert_foreign_checkpoint_error(build)


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build, frozen_stages)


def test_with_cp_equivalent():
    assert_with_cp_equivalent(build, size=(52, 72))


def test_bad_inputs():
    assert_bad_inputs_rejected(build, bad_arch_kwargs=[
        dict(split_size=7), dict(split_size=(1, 2, 0, 7)), dict(checkpoint_weights='best'),
        dict(arch=dict(TINY, depths=[1, 1, 1])), dict(arch=dict(TINY, num_heads=[3, 2, 4, 4])),
        dict(arch=dict(TINY, num_heads=[2, 2, 4, 3])), dict(drop_path_rate=1.0)])


def test_layer_depths():
    model = build()
    assert_layer_depths(model)
    assert model.num_layers == 5
    assert model.get_layer_depth('stem.conv.weight')[0] == 0
    assert model.get_layer_depth('stages.0.blocks.0.attn.lepe.1.weight')[0] == 1
    assert model.get_layer_depth('stages.2.downsample.conv.weight')[0] == 2
    assert model.get_layer_depth('stages.2.blocks.1.mlp.fc1.weight')[0] == 4
    assert model.get_layer_depth('norm3.weight')[0] == 6


def test_training_step_reaches_every_parameter():
    model = build(drop_path_rate=0.0).train()
    outs = model(torch.randn(2, 3, 60, 76))
    sum((o ** 2).mean() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name

"""PyramidTNT backbone: pyramid contract, official checkpoints, parity, resizing, training switches."""
import math

import pytest
import torch
import torch.nn.functional as F

import mmvit_backbones.models.backbones.pyramid_tnt as ptnt
from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models import PyramidTNT
from mmvit_backbones.models.layers import resize_dense_bias, resize_grid_embed
from mmvit_backbones.testing.contract import (
    LARGE_SIZES,
    ODD_SIZES,
    assert_bad_inputs_rejected,
    assert_builds_from_both_registries,
    assert_checkpoint_forms,
    assert_frozen,
    assert_layer_depths,
    assert_missing_checkpoint_error,
    assert_naive_attention_matches,
    assert_norm_eval,
    assert_parity,
    assert_pyramid,
    assert_with_cp_equivalent,
    clone_build,
    spy_calls,
)
from mmvit_backbones.testing.parity import fixture_input, official_state_dict, parity_adapter
from mmvit_backbones.testing.parity.pyramid_tnt import settings_from_official_keys

FIXTURE = 'pyramidtnt_ti_192.pt'
# A tiny custom variant with every piece of the official design: 7 blocks in stage 1 (words in blocks 0 and 1),
# spatial reduction 4/2/1/1, head counts > 1 in both transformers.
TINY = dict(depths=(1, 7, 1, 1), outer_dims=(16, 32, 32, 48), inner_dims=(2, 4, 4, 8), outer_heads=(1, 2, 2, 2),
            inner_heads=(1, 1, 2, 2), mlp_ratio=2, pretrain_img_size=64)
build_tiny = clone_build(PyramidTNT, arch=TINY, drop_path_rate=0.1)
build_ti = clone_build(PyramidTNT, arch='ti')


def _native_shapes(model, h, w):
    return tuple((model.out_channels[i], math.ceil(h / 2 ** (i + 3)), math.ceil(w / 2 ** (i + 3)))
                 for i in model.out_indices)


# ------------------------------------------------------------------------------------------------------ shapes
def test_pyramid_at_odd_and_large_sizes():
    assert_pyramid(build_tiny(), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build_tiny(out_indices=(3, 1)), ((97, 61), ), batch=2)


def test_native_strides_at_odd_and_large_sizes():
    model = build_tiny(native_strides=True).eval()
    assert not list(model.upsamples.parameters())
    with torch.no_grad():
        for h, w in ODD_SIZES + ((511, 513), ):
            got = tuple(tuple(o.shape[1:]) for o in model(torch.randn(1, 3, h, w)))
            assert got == _native_shapes(model, h, w), (h, w, got)


def test_official_variants_build():
    """Hyper-parameters match the README's parameter counts (which include the classifier norm + head) and the
    dense biases have the official shapes (e.g. Ti@192: (576, 36), (144, 36), (36, 36), (9, 9))."""
    expected = {'ti': (10.6, 192, [(576, 36), (144, 36), (36, 36), (9, 9)]),
                's': (32.0, 256, [(1024, 64), (256, 64), (64, 64), (16, 16)]),
                'm': (85.0, 256, [(1024, 64), (256, 64), (64, 64), (16, 16)]),
                'b': (157.0, 256, [(1024, 64), (256, 64), (64, 64), (16, 16)])}
    for arch, (params, size, biases) in expected.items():
        with torch.device('meta'):
            model = PyramidTNT(arch=arch, native_strides=True)
        dim = model.out_channels[-1]
        total = sum(p.numel() for p in model.parameters()) + 2 * dim + dim * 1000 + 1000
        assert abs(total / 1e6 - params) < 0.1, (arch, total)
        assert model.pretrain_img_size == (size, size)
        assert model.outer_pos.shape == (1, (size // 8) ** 2, model.out_channels[0])
        assert [tuple(s.relative_pos.shape[2:]) for s in model.stages] == biases
    with torch.device('meta'):
        assert PyramidTNT(arch='s').out_channels == (128, 256, 512, 512)
    assert PyramidTNT.resolve_arch('ptnt_s_patch16_256') == PyramidTNT.resolve_arch('small')


def test_inner_blocks_follow_the_official_rule():
    with torch.device('meta'):
        model = PyramidTNT(arch='s')
    has_inner = [[b.has_inner for b in stage.blocks] for stage in model.stages]
    assert has_inner == [[True, False], [True, True] + [False] * 6, [True, False, False, False], [True, False]]


def test_padding_to_the_reduction_multiple():
    """The image is zero-padded to a multiple of 32 and the outputs cropped; multiples of 32 run unpadded."""
    model = build_tiny(native_strides=True).eval()
    assert model.pad_size_divisor == 32
    x = torch.randn(1, 3, 70, 93)
    with torch.no_grad():
        outs = model(x)
        padded = model(F.pad(x, (0, 3, 0, 26)))
    for i, (a, b) in enumerate(zip(outs, padded)):
        torch.testing.assert_close(a, b[..., :a.shape[2], :a.shape[3]], msg=f'level {i}')


def test_word_merge_regroups_like_the_official_slicing():
    """Against an independent formulation (strided slices, as the paper describes the merge), odd grids included."""
    merge = ptnt.WordMerge(3, 5)
    for h, w in ((4, 6), (5, 3)):
        words = torch.randn(2 * h * w, 16, 3)
        x = merge.norm(words).reshape(2, h, w, 4, 4, 3)
        x = F.pad(x.permute(0, 3, 4, 5, 1, 2), (0, w % 2, 0, h % 2)).permute(0, 4, 5, 1, 2, 3)
        top = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2]], 3)
        bottom = torch.cat([x[:, 0::2, 1::2], x[:, 1::2, 1::2]], 3)
        x = torch.cat([top, bottom], 4).reshape(-1, 8, 8, 3).permute(0, 3, 1, 2)
        expected = merge.conv(x).reshape(-1, 5, 16).transpose(1, 2)
        torch.testing.assert_close(merge(words, (h, w)), expected)


def test_all_attention_goes_through_shared_core(monkeypatch):
    calls = spy_calls(monkeypatch, 'attention', ptnt)
    assert_naive_attention_matches(build_tiny().eval(), torch.randn(1, 3, 64, 96))
    assert len(calls) == 2 * (10 + 5)  # 10 sentence attentions + 5 word attentions per forward


# -------------------------------------------------------------------------------------------------- registries
def test_builds_from_mmdet_and_mmseg_registries():
    assert_builds_from_both_registries(dict(type='PyramidTNT', arch=TINY))


# ------------------------------------------------------------------------------------------------------ parity
def test_parity_with_official_fixture(fixture):
    model = assert_parity(fixture, ok=('stage0', 'stage1', 'stage2', 'stage3'))
    assert model.pretrain_img_size == (192, 192) and model.native_strides


def _official_layout(model: PyramidTNT):
    """Official key names and shapes of a model of ours (inverse of the converter, plus the classifier)."""
    keys = [[k.replace('.conv.', '.conv.0.') if 'merges.' in k else k, list(v.shape), str(v.dtype)]
            for k, v in model.state_dict().items()]
    dim = model.out_channels[-1]
    return keys + [['norm.weight', [dim], 'torch.float32'], ['norm.bias', [dim], 'torch.float32'],
                   ['head.weight', [1000, dim], 'torch.float32'], ['head.bias', [1000], 'torch.float32']]


def test_parity_adapter_infers_variant_and_pretraining_size():
    """Other official variants, other and non-square sizes, and a custom variant are recognised from the keys;
    the pretraining size comes from outer_pos, not from the variant name."""
    cases = [('ptnt_s_patch16_256', 's', (256, 256), (256, 256)),
             ('ptnt_m_patch16_256', 'm', (192, 320), (192, 320)),
             ('ptnt_b_patch16_256', 'b', (384, 384), (384, 384)),
             ('pyramid_tnt_unknown_name', 'ti', (128, 256), (128, 256))]
    for variant, arch, built_at, input_hw in cases:
        with torch.device('meta'):
            model = PyramidTNT(arch=arch, pretrain_img_size=built_at, native_strides=True)
        shapes = {k: tuple(s) for k, s, _ in _official_layout(model)}
        got_arch, size, in_channels = settings_from_official_keys(variant, shapes, input_hw)
        assert got_arch == arch and size == built_at and in_channels == 3, (variant, got_arch, size)
    with torch.device('meta'):
        model = PyramidTNT(arch=dict(TINY, inner_heads=(1, 1, 1, 1), sr_ratios=(2, 2, 1, 1)), in_channels=4)
    shapes = {k: tuple(s) for k, s, _ in _official_layout(model)}
    got_arch, size, in_channels = settings_from_official_keys('custom', shapes, (64, 64))
    assert size == (64, 64) and in_channels == 4
    assert {k: got_arch[k] for k in ('depths', 'outer_dims', 'inner_dims', 'outer_heads', 'sr_ratios')} == {
        'depths': (1, 7, 1, 1), 'outer_dims': (16, 32, 32, 48), 'inner_dims': (2, 4, 4, 8),
        'outer_heads': (1, 2, 2, 2), 'sr_ratios': (2, 2, 1, 1)}
    assert got_arch['mlp_ratio'] == 2 and not got_arch['qkv_bias']


def test_parity_adapter_on_a_non_square_fixture_layout(fixture):
    """A fixture of a custom variant made at 192x320 (the official model built with img_size=(192, 320)): every
    tensor loads without resizing and the outputs have the official geometry."""
    with torch.device('meta'):
        layout = _official_layout(PyramidTNT(arch=TINY, pretrain_img_size=(192, 320), native_strides=True))
    fake = dict(fixture, keys=layout, input_hw=[192, 320], variant='custom')
    adapter = parity_adapter(fake)
    model = adapter.build()
    assert model.pretrain_grid == (24, 40)
    report = load_pretrained(model, official_state_dict(fake))
    assert not report.missing and not report.unexpected
    with torch.no_grad():
        outs = adapter.outputs(model.eval(), fixture_input(fake))
    assert {k: tuple(v.shape) for k, v in outs.items()} == {
        'stage0': (1, 16, 24, 40), 'stage1': (1, 32, 12, 20), 'stage2': (1, 32, 6, 10), 'stage3': (1, 48, 3, 5)}


def test_fixture_weights_run_at_other_sizes(official):
    model = build_ti()
    load_pretrained(model, official)
    model.eval()
    with torch.no_grad():
        for h, w in ((224, 320), ):
            outs = model(torch.randn(1, 3, h, w))
            assert [tuple(o.shape[2:]) for o in outs] == [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]
            assert all(torch.isfinite(o).all() for o in outs)


# ------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official, tmp_path):
    def build_seeded(**kwargs):  # the new adapter parameters are drawn identically in every build
        torch.manual_seed(0)
        return build_ti(**kwargs)

    assert_checkpoint_forms(build_seeded, official, str(tmp_path))


def test_converter_drops_classifier_and_is_idempotent(official):
    converted = PyramidTNT.convert_checkpoint(official)
    assert not any(k.startswith(('head.', 'norm.')) for k in converted)
    assert 'word_merges.0.conv.weight' in converted and 'sentence_merges.2.conv.bias' in converted
    assert PyramidTNT.convert_checkpoint(converted).keys() == converted.keys()
    model = build_ti()
    report = load_pretrained(model, official)
    assert not report.missing and not report.unexpected
    assert len(report.loaded) == len(official) - 4  # everything but norm.{weight,bias}, head.{weight,bias}


def test_missing_and_foreign_checkpoints():
    assert_missing_checkpoint_error(build_tiny)
    model = build_tiny(init_cfg=dict(type='Pretrained', checkpoint='/nonexistent/ptnt.pth'))
    with pytest.raises(FileNotFoundError, match='BaiduDisk'):
        model.init_weights()
    foreign = {f'layer{i}.conv.weight': torch.zeros(8, 8, 3, 3) for i in range(20)}
    with pytest.raises(CheckpointError, match='does not look like'):
        load_pretrained(build_tiny(), foreign)
    ti_like = {k: v for k, v in build_ti().state_dict().items()}
    with pytest.raises(CheckpointError, match='another variant'):
        load_pretrained(build_tiny(), {k: v for k, v in ti_like.items() if not k.startswith('upsamples.')})


def test_checkpoint_of_another_resolution_is_resized_on_load(official):
    """Ti weights made at 192 load into models stored at 256 and at 160x224: the load-time resize equals the run-time
    one, so a 256-model runs a 256 image exactly like the 192-model does."""
    reference = build_ti(native_strides=True)
    load_pretrained(reference, official)
    for size, grid in ((256, (32, 32)), ((160, 224), (20, 28))):
        model = build_ti(native_strides=True, pretrain_img_size=size)
        report = load_pretrained(model, official)
        assert not report.missing and not report.unexpected
        torch.testing.assert_close(model.outer_pos, resize_grid_embed(official['outer_pos'], (24, 24), grid))
        q0, k0 = model.stages[0].query_hw, model.stages[0].key_hw
        q1, k1 = model.stages[1].query_hw, model.stages[1].key_hw
        assert q0 == grid and k0 == (grid[0] // 4, grid[1] // 4) and k1 == (q1[0] // 2, q1[1] // 2)
        torch.testing.assert_close(model.stages[0].relative_pos, resize_dense_bias(
            official['stages.0.relative_pos'], (24, 24), (6, 6), q0, k0))
        x = torch.randn(1, 3, 8 * grid[0], 8 * grid[1])
        with torch.no_grad():
            for a, b in zip(model.eval()(x), reference.eval()(x)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------- resizing cache
def test_run_time_resize_once_per_stage_and_cached(monkeypatch):
    calls = {'bias': 0, 'pos': 0}
    bias_fn, pos_fn = ptnt.resize_dense_bias, ptnt.resize_grid_embed

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(ptnt, 'resize_dense_bias', count('bias', bias_fn))
    monkeypatch.setattr(ptnt, 'resize_grid_embed', count('pos', pos_fn))
    model = build_tiny()
    model.train()
    outs = model(torch.randn(2, 3, 96, 128))  # training: recomputed every forward, once per stage (not per block)
    assert calls == {'bias': 4, 'pos': 1}
    sum(o.mean() for o in outs).backward()
    assert model.outer_pos.grad is not None and all(s.relative_pos.grad is not None for s in model.stages)
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
        model(torch.randn(2, 3, 96, 128))  # same size: cached
        assert calls == {'bias': 8, 'pos': 2}
        model(torch.randn(1, 3, 64, 64))  # new size
        assert calls == {'bias': 12, 'pos': 3}
        model.load_state_dict(model.state_dict())  # in-place update invalidates the cache
        model(torch.randn(1, 3, 64, 64))
        assert calls == {'bias': 16, 'pos': 4}


def test_bias_layout_keeps_values(monkeypatch):
    """The bias reaches SDPA in the layout it reads without a per-block copy: on CUDA a view with 16-aligned rows,
    on CPU contiguous (the resized bias is a transposed view)."""
    bias = torch.randn(1, 2, 12, 21, requires_grad=True)
    monkeypatch.setattr(torch.Tensor, 'is_cuda', property(lambda self: True))
    aligned = ptnt._sdpa_bias_layout(bias)
    monkeypatch.undo()
    assert aligned.stride(-2) % 16 == 0 and aligned.stride(1) % 16 == 0 and torch.equal(aligned, bias)
    aligned.sum().backward()
    assert torch.equal(bias.grad, torch.ones_like(bias))
    assert ptnt._sdpa_bias_layout(bias) is bias  # CPU, contiguous already: unchanged
    transposed = bias.detach().transpose(-1, -2).contiguous().transpose(-1, -2)  # like resize_dense_bias's result
    on_cpu = ptnt._sdpa_bias_layout(transposed)
    assert on_cpu.is_contiguous() and torch.equal(on_cpu, bias)
    model = build_tiny().eval()
    with torch.no_grad():
        for stage in model.stages:  # the cached bias of a resized input is contiguous
            assert stage.attention_bias((5, 7)).is_contiguous()


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)
    model = build_tiny(frozen_stages=frozen_stages)
    model.train()
    for i, stage in enumerate(model.stages):
        assert stage.relative_pos.requires_grad == (i >= frozen_stages)
    assert all(p.requires_grad for p in model.upsamples.parameters())  # new adapters always train


def test_norm_eval():
    assert_norm_eval(build_tiny)
    model = build_tiny(norm_eval=True)
    model.train()
    batch_norms = lambda module: [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # noqa: E731
    assert batch_norms(model.patch_embed) and not any(m.training for m in batch_norms(model.patch_embed))
    # the adapters' BN layers have no pretrained statistics and keep learning them
    assert batch_norms(model.upsamples) and all(m.training for m in batch_norms(model.upsamples))


def test_with_cp_is_equivalent():
    assert_with_cp_equivalent(build_tiny)


def test_bad_inputs_rejected():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, depths=(1, 1, 1))),
        dict(arch=dict(TINY, outer_heads=(3, 2, 2, 2))),
        dict(arch=dict(TINY, inner_dims=(2, 4, 0, 8))),
        dict(arch={k: v for k, v in TINY.items() if k != 'inner_heads'}),
        dict(pretrain_img_size=4),
        dict(pretrain_img_size=(64, 64, 3)),
        dict(drop_path_rate=1.5),
    ])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.num_layers == 10
    depth = lambda name: model.get_layer_depth(name)[0]  # noqa: E731
    assert depth('patch_embed.common_conv.0.weight') == depth('outer_pos') == depth('inner_pos') == 0
    assert depth('stages.0.blocks.0.outer_attn.q.weight') == 1
    assert depth('stages.1.relative_pos') == depth('stages.1.blocks.0.proj.weight') == 2
    assert depth('word_merges.0.conv.weight') == depth('sentence_merges.0.norm.bias') == 1
    assert depth('stages.3.blocks.0.outer_mlp.fc2.bias') == 10
    assert depth('upsamples.0.up.0.weight') == 11

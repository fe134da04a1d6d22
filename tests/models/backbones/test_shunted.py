"""Shunted Transformer backbone: pyramid contract, official checkpoints, parity, training switches."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import mmvit_backbones.models.backbones.shunted as shunted_module
from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models import ShuntedTransformer
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
    assert_norm_eval,
    assert_parity,
    assert_pyramid,
    assert_with_cp_equivalent,
    clone_build,
    pyramid_shapes,
    spy_calls,
)
from mmvit_backbones.testing.parity import fixture_input, official_state_dict, parity_adapter

FIXTURE = 'shunted_t_224.pt'
# A tiny custom variant with every piece of the official design (extra stem conv, both aggregation branches at
# rates 8/4, 4/2 and 2/1, the plain last stage) for fast contract tests.
TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 2, 1], num_heads=[2, 2, 4, 4], mlp_ratios=[2, 2, 2, 2],
            sr_ratios=[8, 4, 2, 1], num_conv=1)
build_tiny = clone_build(ShuntedTransformer, arch=TINY, drop_path_rate=0.1)


def build_t(**kwargs):
    return ShuntedTransformer(**dict(dict(arch='t', drop_path_rate=0.0), **kwargs))


@pytest.fixture(scope='module')
def parity_model(fixture):
    """The parity run's model (the parity verdict asserted: an error here fails both tests that use it)."""
    return assert_parity(fixture, ok=('stage0', 'stage1', 'stage2', 'stage3'))


# ------------------------------------------------------------------------------------------------------- shapes
def test_pyramid_at_odd_and_large_sizes():
    assert_pyramid(build_tiny(), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build_tiny(out_indices=(1, 3)), ((97, 61), ), batch=2)


def test_official_variants():
    for arch, params in (('t', 11.5), ('s', 22.4), ('b', 39.6)):  # README: 11.5M / 22.4M / 39.6M with the head
        with torch.device('meta'):
            model = ShuntedTransformer(arch=arch)
        assert model.out_channels == (64, 128, 256, 512)
        total = sum(p.numel() for p in model.parameters()) + 512 * 1000 + 1000
        assert abs(total / 1e6 - params) < 0.1, (arch, total)
    assert ShuntedTransformer.resolve_arch('small') == ShuntedTransformer.resolve_arch('s')


def test_official_init():
    model = build_tiny()
    model.init_weights()
    q = model.stages[0].blocks[0].attn.q
    assert q.weight.std() < 0.03 and torch.equal(q.bias, torch.zeros_like(q.bias))  # trunc_normal(std=.02)
    assert torch.equal(model.stages[3].norm.weight, torch.ones(64))


def test_padding_to_stride_4():
    """Sizes that are not multiples of 4 are zero-padded at the bottom/right; multiples of 4 run unchanged."""
    model = build_tiny().eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 70, 93)
        for a, b in zip(model(x), model.forward_features(F.pad(x, (0, 3, 0, 2)))):
            torch.testing.assert_close(a, b)
        x = torch.randn(1, 3, 64, 96)
        for a, b in zip(model(x), model.forward_features(x)):
            torch.testing.assert_close(a, b)


def test_all_attention_goes_through_shared_core(monkeypatch):
    calls = spy_calls(monkeypatch, 'attention', shunted_module)
    assert_naive_attention_matches(build_tiny().eval(), torch.randn(1, 3, 64, 64))
    # per forward: two calls (one per head group) in each block of stages 1-3, one in each block of stage 4
    assert len(calls) == 2 * (2 * (1 + 1 + 2) + 1)


# --------------------------------------------------------------------------------------------------- registries
def test_builds_from_mmdet_and_mmseg_registries():
    assert_builds_from_both_registries(dict(type='ShuntedTransformer', arch=TINY))


# ------------------------------------------------------------------------------------------------------- parity
def test_parity_with_official_fixture(parity_model):
    settings = parity_model.arch_settings
    assert tuple(settings['depths']) == (1, 2, 4, 1) and settings['num_conv'] == 0


def test_fixture_weights_run_at_odd_non_square_size(parity_model):
    assert_pyramid(parity_model, ((225, 301), ))


def _official_keys_of(fixture: dict, depths, num_conv: int) -> dict:
    """A fixture-like dict for another build of SSA.py, with the key layout the official code would give it."""
    block0 = {}
    for key, shape, dtype in fixture['keys']:
        if key.startswith('block'):
            stage, index, rest = key.split('.', 2)
            if index == '0':
                block0.setdefault(stage, []).append((rest, shape, dtype))
    keys = []
    for key, shape, dtype in fixture['keys']:
        if key.startswith('patch_embed1.conv.3.'):  # the final 2x2 conv comes after the extra stem convs
            keys.append([key.replace('conv.3.', f'conv.{3 * (num_conv + 1)}.'), shape, dtype])
        elif key.startswith('block'):
            stage, index, rest = key.split('.', 2)
            if index == '0' and rest == block0[stage][0][0]:
                for b in range(depths[int(stage[-1]) - 1]):
                    keys += [[f'{stage}.{b}.{r}', s, d] for r, s, d in block0[stage]]
        else:
            keys.append([key, shape, dtype])
    for j in range(1, num_conv + 1):
        keys.append([f'patch_embed1.conv.{3 * j}.weight', [64, 64, 3, 3], 'torch.float32'])
        for part in ('weight', 'bias', 'running_mean', 'running_var'):
            keys.append([f'patch_embed1.conv.{3 * j + 1}.{part}', [64], 'torch.float32'])
        keys.append([f'patch_embed1.conv.{3 * j + 1}.num_batches_tracked', [], 'torch.int64'])
    int_buffers = {k: torch.tensor(0) for k, _, d in keys if 'int' in str(d)}
    return dict(fixture, keys=keys, int_buffers=int_buffers, variant='shunted_custom', input_hw=[70, 93])


def test_parity_adapter_infers_other_variants_and_sizes(fixture):
    """Another build of SSA.py (other depths, 2 extra stem convs) at a non-square size that is not a multiple of 4:
    the adapter infers the hyper-parameters from the keys, every official tensor loads, and the outputs have the
    official (flooring) geometry. (Against the official code itself this was checked for T/S/B at 224x224,
    225x301, 70x93, 224x320, 97x66, 128x160 and 161x127: every stage within 5e-6.)"""
    fake = _official_keys_of(fixture, depths=(2, 1, 3, 2), num_conv=2)
    adapter = parity_adapter(fake)
    model = adapter.build()
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in model.arch_settings.items()}
    assert settings == dict(ShuntedTransformer.resolve_arch('t'), depths=(2, 1, 3, 2), num_conv=2)
    report = load_pretrained(model, official_state_dict(fake))
    assert not report.missing and not report.unexpected
    model.eval()
    with torch.no_grad():
        outs = adapter.outputs(model, fixture_input(fake))
    want = [(math.ceil(70 / 2) // 2, math.ceil(93 / 2) // 2)]  # official stem: 7x7/2 pad 3, then 2x2/2 (floors)
    for _ in range(3):
        want.append((math.ceil(want[-1][0] / 2), math.ceil(want[-1][1] / 2)))
    assert [tuple(outs[f'stage{i}'].shape[-2:]) for i in range(4)] == want


# -------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official, tmp_path):
    assert_checkpoint_forms(build_t, official, str(tmp_path))


def test_converter_drops_head_and_is_idempotent(official):
    converted = ShuntedTransformer.convert_checkpoint(official)
    assert not any(k.startswith('head.') for k in converted)
    assert 'stages.0.blocks.0.mlp.dwconv.weight' in converted  # official mlp.dwconv.dwconv
    assert 'stages.0.blocks.0.attn.branches.1.reduce.weight' in converted  # official attn.sr2
    assert 'stem.convs.0.bn.running_var' in converted and 'stem.proj.weight' in converted
    again = ShuntedTransformer.convert_checkpoint(converted)
    assert again.keys() == converted.keys() and all(again[k] is converted[k] for k in converted)
    with torch.device('meta'):
        own = set(build_t().state_dict())
    assert set(converted) == own


def test_checkpoint_errors(official):
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)
    other = ShuntedTransformer(arch=dict(ShuntedTransformer.arch_zoo['t'], mlp_ratios=[4, 4, 4, 4]))
    with pytest.raises(CheckpointError, match='another variant'):
        load_pretrained(other, official)


def test_no_resolution_dependent_state():
    """No position embeddings or relative tables: a checkpoint loads into a model used at any size without
    resizing, and repeated sizes give identical results (no per-size state to resize or cache)."""
    model = build_tiny()
    load_pretrained(model, build_tiny().state_dict())
    assert [n for n, _ in model.named_buffers() if not n.startswith('stem.convs.')] == []
    model.eval()
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        first = model(x)
        model(torch.randn(1, 3, 128, 64))
        second = model(x)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)


def test_everything_frozen():
    model = build_tiny(frozen_stages=4)
    model.train()
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(m.training for m in model.stem.modules())
    assert not any(m.training for stage in model.stages for m in stage.modules())


def test_norm_eval():
    assert_norm_eval(build_tiny)


def test_with_cp_equivalent():
    assert_with_cp_equivalent(build_tiny)


def test_bad_inputs():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, num_heads=[1, 2, 4, 4])),       # odd head count where attention is shunted
        dict(arch=dict(TINY, sr_ratios=[8, 3, 2, 1])),       # rate 3 has no half rate
        dict(arch=dict(TINY, depths=[1, 1, 1])),             # not 4 stages
        dict(arch=dict(TINY, embed_dims=[16, 32, 50, 64])),  # 50 channels do not split into 4 heads
        dict(arch={k: v for k, v in TINY.items() if k != 'num_conv'}),
        dict(drop_path_rate=1.5),
    ])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.num_layers == 5
    depth = lambda name: model.get_layer_depth(name)[0]  # noqa: E731
    assert depth('stem.convs.0.conv.weight') == 0
    assert depth('stages.0.blocks.0.attn.q.weight') == 1
    assert depth('stages.0.norm.weight') == 1
    assert depth('stages.1.downsample.proj.weight') == 2
    assert depth('stages.2.blocks.1.mlp.fc1.weight') == 4
    assert depth('stages.3.norm.bias') == 5


def test_training_step_and_drop_path():
    model = build_tiny(drop_path_rate=0.3)
    model.train()
    outs = model(torch.randn(2, 3, 65, 97))
    assert [tuple(o.shape[1:]) for o in outs] == list(pyramid_shapes(model, 65, 97))
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    blocks = [b for stage in model.stages for b in stage.blocks]
    assert type(blocks[0].drop_path).__name__ == 'Identity'
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.3)


def test_deepcopy():
    model = copy.deepcopy(build_tiny()).eval()
    with torch.no_grad():
        assert len(model(torch.randn(1, 3, 32, 32))) == 4

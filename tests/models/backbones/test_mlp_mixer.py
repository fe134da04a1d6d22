"""MLPMixer (+ the shared any-size token mixing): contract, parity with the official Flax model, checkpoints, and the
two any-size mechanisms (windows of the pretraining grid, RaftMLP resampling)."""
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
import torch

from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models.backbones.mlp_mixer import MLPMixer
from mmvit_backbones.models.layers import mix_tokens, resize_token_grid, window_token_mixing
from mmvit_backbones.models.layers.token_mixing import num_windows
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
    assert_parity,
    assert_pyramid,
    assert_with_cp_equivalent,
    clone_build,
    pyramid_shapes,
)
from mmvit_backbones.testing.parity.mlp_mixer import flax_same_padding

FIXTURE = 'mixer_b32_224.pt'
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
# a 4x4-token pretraining grid (64 px at patch 16) keeps the windows small and the tests fast
TINY = dict(embed_dims=32, depth=4, tokens_mlp_dims=16, channels_mlp_dims=64, patch_size=16)
build_tiny = clone_build(MLPMixer, arch=TINY, pretrain_img_size=64)
# Mixer-B/32 cut to its first 2 blocks: the official layout and widths at a fraction of the cost
B32_2 = dict(embed_dims=768, depth=2, tokens_mlp_dims=384, channels_mlp_dims=3072, patch_size=32)


def build_b32_2(**kwargs):
    torch.manual_seed(0)  # the pyramid (not in ImageNet checkpoints) is randomly initialised: same init per build
    return MLPMixer(**dict(dict(arch=B32_2), **kwargs))


@pytest.fixture(scope='module')
def flax2(official):
    """The fixture's official Flax tree cut to 2 blocks."""
    return {k: v for k, v in official.items()
            if not (k.startswith('MixerBlock_') and int(k.split('/')[0].split('_')[1]) >= 2)}


# ------------------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize('mode', ['window', 'resample'])
@pytest.mark.parametrize('patch_size', [16, 32, 8])
def test_pyramid_shapes_any_size(mode, patch_size):
    model = build_tiny(arch=dict(TINY, patch_size=patch_size), pretrain_img_size=4 * patch_size, token_mixing=mode)
    # patch 8 keeps its native stride-8 map (x2 deconv to stride 4: D/2 channels, as ViTDet's widths)
    assert model.out_channels == ((16, 32, 32, 32) if patch_size == 8 else (8, 16, 32, 32))
    assert_pyramid(model, ODD_SIZES + ((112, 448), ), batch=2)


def test_detection_sizes_and_empty_batch():
    model = build_tiny()
    assert_pyramid(model, LARGE_SIZES)
    outs = model.eval()(torch.randn(0, 3, 97, 131))
    assert tuple(tuple(o.shape) for o in outs) == tuple((0, ) + s for s in pyramid_shapes(model, 97, 131))


def test_official_variants():
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        _check_official_variants()


def _check_official_variants():
    for arch, dims in (('s16', 512), ('b16', 768), ('s32', 512), ('l16', 1024)):
        model = MLPMixer(arch=arch)
        assert model.out_channels == (dims // 4, dims // 2, dims, dims) and model.pretrain_grid == (
            (14, 14) if arch.endswith('16') else (7, 7))
    b16 = MLPMixer(arch='b16')
    assert sum(p.numel() for n, p in b16.named_parameters() if not n.startswith('pyramid.')) == \
        59880472 - (768 * 1000 + 1000)  # vit_jax/models_test.py count minus the 1000-class head


@pytest.mark.parametrize('out_indices', [(3, ), (1, 2), (0, 3)])
def test_out_indices_subsets(out_indices):
    model = build_tiny(out_indices=out_indices)
    assert_pyramid(model, [(97, 131)])
    model.train()
    sum(o.mean() for o in model(torch.randn(1, 3, 64, 96))).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='MLPMixer', arch=TINY, pretrain_img_size=64))


# ------------------------------------------------------------------------------------------------------------ parity
def test_parity_fixture(fixture):
    assert_parity(fixture, skipped=('logits', ))


def test_flax_same_padding():
    assert flax_same_padding(224, 32) == (0, 0)
    assert flax_same_padding(230, 16) == (5, 5) and flax_same_padding(231, 16) == (4, 5)


def test_tanh_gelu_is_the_default_and_differs(flax2):
    tanh, exact = build_b32_2(), build_b32_2(gelu_approximate='none')
    assert tanh.blocks[0].mlp_tokens.act.approximate == 'tanh'
    assert tanh.blocks[0].mlp_channels.act.approximate == 'tanh'
    load_pretrained(tanh, flax2), load_pretrained(exact, flax2)
    x = 3 * torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert not torch.allclose(tanh.eval()(x)[2], exact.eval()(x)[2])


# ------------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms_flax_and_timm(flax2, tmp_path):
    assert_checkpoint_forms(build_b32_2, flax2, str(tmp_path))
    converted = MLPMixer.convert_checkpoint(flax2)
    assert MLPMixer.convert_checkpoint(converted).keys() == converted.keys()  # idempotent
    # the .npz files as published (flattened Flax tree, numpy arrays) load through init_cfg
    npz = tmp_path / 'Mixer-B_32.npz'
    np.savez(npz, **{k: v.numpy() for k, v in flax2.items()})  # with the classifier `head/*`
    from_npz = build_b32_2(init_cfg=dict(type='Pretrained', checkpoint=str(npz)))
    from_npz.init_weights()
    # timm's converted file: our layout plus the head
    timm_file = tmp_path / 'jx_mixer.pth'
    torch.save(dict(converted, **{'head.weight': torch.zeros(1000, 768), 'head.bias': torch.zeros(1000)}), timm_file)
    from_timm = build_b32_2(init_cfg=dict(type='Pretrained', checkpoint=str(timm_file)))
    from_timm.init_weights()
    for key, value in converted.items():
        assert torch.equal(from_npz.state_dict()[key], value), key
        assert torch.equal(from_timm.state_dict()[key], value), key
    assert converted['stem.proj.weight'].shape == (768, 3, 32, 32)
    assert torch.equal(converted['stem.proj.weight'], flax2['stem/kernel'].permute(3, 2, 0, 1))
    assert torch.equal(converted['blocks.1.mlp_tokens.fc2.weight'], flax2['MixerBlock_1/token_mixing/Dense_1/kernel'].T)


def test_convert_tool_reads_npz(flax2, tmp_path, monkeypatch):
    npz, out = tmp_path / 'Mixer-B_32.npz', tmp_path / 'mixer.pth'
    np.savez(npz, **{k: v.numpy() for k, v in flax2.items()})
    monkeypatch.setattr(sys, 'argv', ['convert_checkpoint.py', 'MLPMixer', str(npz), str(out)])
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # what running the script from tools/ provides
    runpy.run_path(osp.join(ROOT, 'tools', 'convert_checkpoint.py'), run_name='__main__')
    converted = torch.load(out, weights_only=True)
    assert converted.keys() == MLPMixer.convert_checkpoint(flax2).keys()
    assert not load_pretrained(build_b32_2(), converted).missing


def test_checkpoint_of_another_grid_is_refused_with_the_fix(flax2):
    state = MLPMixer.convert_checkpoint(flax2)  # 7x7 tokens (224 at patch 32)
    with pytest.raises(CheckpointError, match=r'7x7 tokens, i.e. pretrain_img_size=224'):
        load_pretrained(build_b32_2(pretrain_img_size=384), state)
    model = build_b32_2(pretrain_img_size=224)
    assert not load_pretrained(model, state).missing


def test_checkpoint_of_another_patch_size_names_the_variant(flax2):
    """A B/32 checkpoint in a patch-16 model: the fix is the B/32 arch, not a pretrain_img_size (its 7x7 tokens
    would suggest 112 at patch 16, a wrong hint)."""
    state = MLPMixer.convert_checkpoint(flax2)
    with pytest.raises(CheckpointError, match=r'another variant') as err:
        load_pretrained(build_b32_2(arch=dict(B32_2, patch_size=16)), state)
    assert "checkpoint is for patch 32 (stem kernel 32x32) but the model has patch 16" in str(err.value)
    assert "arch='b32'" in str(err.value) and 'pretrain_img_size' not in str(err.value)


def test_missing_and_foreign_checkpoints():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)


# ---------------------------------------------------------------------------------------------- any-size mechanisms
def _linear_operator(n: int, seed: int = 0):
    weight = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return weight, lambda t: torch.matmul(weight, t)


def test_window_padding_does_not_change_the_result():
    """With a grid that is not a multiple of the window, every real window position sees exactly the operator
    restricted to the real positions (W[valid, valid]): the padding contributes nothing."""
    weight, op = _linear_operator(16)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)  # 6x3 grid, 4x4 windows: padded to 8x4
    for shifted in (False, True):
        out = window_token_mixing(x, (4, 4), shifted, op)
        top = 2 if shifted else 0  # the H axis spans two windows: shifted by half a window
        padded = torch.zeros(2, 8, 4, 5, dtype=torch.float64)
        padded[:, top:top + 6, :3] = x
        for r0 in range(0, padded.shape[1], 4):
            rows = [r for r in range(r0, r0 + 4) if top <= r < top + 6]
            valid = [(r - r0) * 4 + c for r in rows for c in range(3)]
            if not valid:
                continue
            sub = weight[valid][:, valid]
            want = torch.einsum('ij,bjc->bic', sub, x[:, rows[0] - top:rows[-1] - top + 1].reshape(2, -1, 5))
            torch.testing.assert_close(out[:, rows[0] - top:rows[-1] - top + 1].reshape(2, -1, 5), want)
    assert num_windows((6, 3), (4, 4), False) == num_windows((6, 3), (4, 4), True) == 2
    assert num_windows((9, 3), (4, 4), True) == 3 and num_windows((9, 13), (4, 4), False) == 12


def test_pretraining_grid_is_one_window_without_shift():
    weight, op = _linear_operator(16)
    x = torch.randn(1, 4, 4, 3, dtype=torch.float64)
    want = torch.matmul(weight, x.reshape(1, 16, 3)).reshape(1, 4, 4, 3)
    for shifted in (False, True):
        torch.testing.assert_close(window_token_mixing(x, (4, 4), shifted, op), want)
    assert resize_token_grid(x, (4, 4)) is x


def test_modes_agree_at_the_pretraining_size():
    torch.manual_seed(0)
    window = build_tiny()
    resample = build_tiny(token_mixing='resample')
    resample.load_state_dict(window.state_dict())
    x = torch.randn(2, 3, 64, 64)  # the 4x4 pretraining grid
    with torch.no_grad():
        for a, b in zip(window.eval()(x), resample.eval()(x)):
            torch.testing.assert_close(a, b)
        outs = [m(torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))) for m in (window, resample)]
    assert not torch.allclose(outs[0][2], outs[1][2])  # elsewhere they differ


def test_same_token_count_non_square_is_not_the_square_layout():
    """112x448 has 7x28 = 196 patches, as many as 224x224: the token MLP must not be applied as if they were a
    14x14 grid. In an unshifted block, tokens of the left 14 columns (one window) do not see the right ones."""
    arch = dict(TINY, depth=1)
    model = MLPMixer(arch=arch, pretrain_img_size=224, final_norm=False, out_indices=(2, )).eval()
    x = torch.randn(1, 3, 112, 448)
    y = x.clone()
    y[..., 14 * 16:] += 1.0  # the right half of the token grid only
    with torch.no_grad():
        delta = (model(x)[0] - model(y)[0]).abs().sum(1)[0]  # (7, 28)
    assert delta[:, :14].max() == 0 and delta[:, 14:].min() > 0


def test_shifted_windows_connect_windows():
    """Block 0 mixes within windows, block 1 within windows shifted by half: after both, information crosses the
    border of the unshifted windows, never further than the shifted window reaches."""
    def delta(depth):
        model = build_tiny(arch=dict(TINY, depth=depth), final_norm=False, out_indices=(2, )).eval()
        x = torch.randn(1, 3, 128, 192)  # 8x12 grid, 4x4 windows
        y = x.clone()
        y[..., :16, :16] += 1.0  # token (0, 0)
        with torch.no_grad():
            return (model(x)[0] - model(y)[0]).abs().sum(1)[0]
    one, two = delta(1), delta(2)
    assert one[:4, :4].min() > 0 and one[4:].max() == 0 and one[:, 4:].max() == 0
    assert two[:6, :6].min() > 0 and two[6:].max() == 0 and two[:, 6:].max() == 0


def test_resample_mode_is_raftmlp():
    """RaftMLP: resize the grid to the pretraining grid, run the token sub-block there (residual included), back."""
    _, op = _linear_operator(16)
    x = torch.randn(2, 6, 9, 3, dtype=torch.float64)
    out = mix_tokens(x, 'resample', (4, 4), False, lambda t: 2 * t, op, lambda t: 0.5 * t)
    small = resize_token_grid(x, (4, 4))
    small = small + 0.5 * op((2 * small).reshape(2, 16, 3)).reshape(2, 4, 4, 3)
    torch.testing.assert_close(out, resize_token_grid(small, (6, 9)))
    with pytest.raises(ValueError, match='token mixing mode'):
        mix_tokens(x, 'dense', (4, 4), False, lambda t: t, op, lambda t: t)


# ---------------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)


@pytest.mark.parametrize('mode', ['window', 'resample'])
def test_with_cp_equivalent(mode):
    assert_with_cp_equivalent(clone_build(build_tiny, drop_path_rate=0.1, token_mixing=mode))


def test_bad_inputs():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, patch_size=14)), dict(arch=dict(TINY, embed_dims=30)), dict(arch=dict(depth=2)),
        dict(token_mixing='dense'), dict(gelu_approximate='erf'), dict(pretrain_img_size=8)])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.get_layer_depth('backbone.stem.proj.weight', prefix='backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.blocks.3.mlp_tokens.fc1.weight', prefix='backbone.') == (4, 6)
    assert model.get_layer_depth('backbone.norm.weight', prefix='backbone.') == (5, 6)

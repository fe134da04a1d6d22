"""TNT backbone: pyramid contract, the official per-patch word convolution, official/timm checkpoints, parity,
size handling, training switches."""
import copy
import re

import pytest
import torch
import torch.nn.functional as F

import mmvit_backbones.models.layers.transformer as transformer_module
from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models import TNT
from mmvit_backbones.models.backbones import single_scale as single_scale_module
from mmvit_backbones.models.backbones import tnt as tnt_module
from mmvit_backbones.models.layers import resize_grid_embed, tokens_to_map
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
    pyramid_shapes,
    spy_calls,
)
from mmvit_backbones.testing.parity import official_state_dict, parity_adapter

FIXTURE = 'tnt_s_224.pt'
# A tiny custom variant with every piece of the official design, for fast contract tests.
TINY = dict(embed_dims=32, inner_dims=8, depth=4, num_heads=2, inner_heads=2, mlp_ratio=2.)
build_tiny = clone_build(TNT, arch=TINY, drop_path_rate=0.1)


def to_official(state: dict) -> dict:
    """Our key layout -> the official one (the inverse of the converter), with ``outer_tokens`` and a head."""
    out = {}
    for key, value in state.items():
        if key.startswith('pyramid.'):
            continue
        key = key.replace('to_sentence.', '')
        match = re.match(r'^(blocks\.\d+\.)(inner|outer)\.(norm1|attn|norm2|mlp)\.(.*)$', key)
        if match:
            prefix, side, part, rest = match.groups()
            if rest.startswith('qkv.'):
                dims = value.shape[0] // 3
                param = rest.split('.', 1)[1]
                out[f'{prefix}{side}_attn.qk.{param}'] = value[:2 * dims].clone()
                out[f'{prefix}{side}_attn.v.{param}'] = value[2 * dims:].clone()
                continue
            key = f'{prefix}{side}_{part}.{rest}'
        out[key] = value.clone()
    dims = state['cls_token'].shape[-1]
    out['outer_tokens'] = torch.zeros(1, state['outer_pos'].shape[1] - 1, dims)
    out['head.weight'], out['head.bias'] = torch.randn(10, dims), torch.zeros(10)
    return out


def to_timm(official: dict) -> dict:
    """The official layout -> timm's non-legacy TNT layout (timm ``checkpoint_filter_fn``, written out here)."""
    names = [('outer_pos', 'patch_pos'), ('inner_pos', 'pixel_pos'), ('patch_embed', 'pixel_embed'),
             ('proj_norm1', 'norm1_proj'), ('proj_norm2', 'norm2_proj'), ('inner_norm1', 'norm_in'),
             ('inner_attn', 'attn_in'), ('inner_norm2', 'norm_mlp_in'), ('inner_mlp', 'mlp_in'),
             ('outer_norm1', 'norm_out'), ('outer_attn', 'attn_out'), ('outer_norm2', 'norm_mlp'),
             ('outer_mlp', 'mlp')]
    out = {}
    for key, value in official.items():
        if key == 'outer_tokens':
            continue
        for old, new in names:
            key = key.replace(old, new)
        if key == 'pixel_pos':  # (1, 16, c) -> (1, c, 4, 4)
            value = value.transpose(1, 2).reshape(1, -1, 4, 4)
        out[key] = value
    return out


def official_words(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The official PatchEmbed: nn.Unfold(16, 16) (floor), per-patch conv, (B*N, 16, c)."""
    b, c = x.shape[:2]
    patches = F.unfold(x, kernel_size=16, stride=16)  # (B, C*256, N)
    n = patches.shape[-1]
    words = conv(patches.transpose(1, 2).reshape(b * n, c, 16, 16))
    return words.reshape(b * n, conv.out_channels, -1).transpose(1, 2)


# ------------------------------------------------------------------------------------------------------------ shapes
def test_pyramid_at_odd_and_large_sizes():
    assert_pyramid(build_tiny(), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build_tiny(use_word_fine_maps=True), ODD_SIZES, batch=2)
    assert_pyramid(build_tiny(window_size=3, window_block_indexes=(0, 2)), ODD_SIZES + LARGE_SIZES[:1])


def test_empty_batch():
    model = build_tiny(use_word_fine_maps=True).eval()
    with torch.no_grad():
        outs = model(torch.zeros(0, 3, 70, 90))
    assert [tuple(o.shape) for o in outs] == [(0, ) + s for s in pyramid_shapes(model, 70, 90)]


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (0, 3), (2, )])
@pytest.mark.parametrize('fine', [False, True])
def test_out_indices_subsets_leave_no_unused_parameters(out_indices, fine):
    model = build_tiny(out_indices=out_indices, use_word_fine_maps=fine)
    assert_pyramid(model, [(97, 131)])
    model.train()
    outs = model(torch.randn(1, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


def test_official_variants_build():
    # readme #params (with the 1000-class head and the unused outer_tokens, without our pyramid adapter)
    for arch, params, channels in (('s', 23.8, (96, 192, 384, 384)), ('b', 65.6, (160, 320, 640, 640))):
        with torch.device('meta'):
            model = TNT(arch=arch)
        dims = model.embed_dims
        assert model.out_channels == channels
        pyramid = sum(p.numel() for p in model.pyramid.parameters())
        total = sum(p.numel() for p in model.parameters()) - pyramid + dims * 1000 + 1000 + 196 * dims
        assert abs(total / 1e6 - params) < 0.1, (arch, total)
    assert TNT.resolve_arch('tnt_s_patch16_224') == TNT.resolve_arch('s')


def test_official_small_variant_runs_non_square():
    # (800x1333 with TNT-S takes > 10 s on a loaded 2-core CPU; the tiny variant covers the large sizes)
    assert_pyramid(TNT(arch='s', use_word_fine_maps=True, out_indices=(0, 1)), ((208, 321), ))


# -------------------------------------------------------------------------------------------------- word embedding
def test_word_convolution_is_per_patch():
    """Our conv over the batch of patches equals the official nn.Unfold + per-patch conv, and differs from the
    conv over the whole image of the older ports exactly at the patch borders (first word row/column)."""
    torch.manual_seed(0)
    embed = tnt_module.WordEmbed(3, 8)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        ours, grid = embed(x)
        reference = official_words(embed.proj, x)
        whole_image = embed.proj(x)  # (B, c, 12, 16): the legacy timm/mmpretrain order
    assert grid == (3, 4)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    # words in the first row/column of a patch that is not at the image border see the neighbouring patch there
    diff = tnt_module.words_to_map(ours, grid) - whole_image  # (B, c, 12, 16)
    patch_border = torch.zeros(12, 16, dtype=torch.bool)
    patch_border[4::4] = True
    patch_border[:, 4::4] = True
    assert diff[..., ~patch_border].abs().max() < 1e-5
    assert (diff[..., patch_border].abs().amax(dim=1) > 1e-4).all()


def test_words_to_map_layout():
    """Word k = 4r + c of patch (i, j) lands at pixel (4i + r, 4j + c)."""
    grid = (2, 3)
    words = torch.arange(2 * 6 * 16 * 1, dtype=torch.float32).reshape(12, 16, 1)
    word_map = tnt_module.words_to_map(words, grid)
    assert word_map.shape == (2, 1, 8, 12)
    for b, i, j, r, c in ((0, 0, 0, 0, 0), (1, 1, 2, 3, 1), (0, 1, 0, 2, 3)):
        assert word_map[b, 0, 4 * i + r, 4 * j + c] == words[(b * 2 + i) * 3 + j, 4 * r + c, 0]


def test_padding_to_whole_patches():
    """Sizes that are not multiples of 16 are zero-padded at the bottom/right; ``official_grid`` drops the
    remainder pixels as the official nn.Unfold does."""
    model = build_tiny().eval()
    x = torch.randn(1, 3, 70, 93)
    with torch.no_grad():
        ours = model.forward_intermediates(x)
        padded = model.forward_intermediates(F.pad(x, (0, 3, 0, 10)))
        for key in ('words', 'feature'):
            torch.testing.assert_close(ours[key], padded[key])
        assert ours['feature'].shape[-2:] == (5, 6) and ours['words'].shape[-2:] == (20, 24)
        cropped = model.forward_intermediates(x, official_grid=True)
        torch.testing.assert_close(cropped['feature'], model.forward_intermediates(x[..., :64, :80])['feature'])


# ---------------------------------------------------------------------------------------------- attention core
def test_all_attention_goes_through_shared_core(monkeypatch):
    calls = spy_calls(monkeypatch, 'attention', transformer_module, record=lambda q, *a, **k: tuple(q.shape))
    with torch.no_grad():
        build_tiny().eval()(torch.randn(2, 3, 64, 80))
    # per block: the words of all 2 x 4 x 5 patches as one batch of 16-word sequences, then the sentences
    assert calls == [(40, 2, 16, 4), (2, 2, 21, 16)] * TINY['depth']


def test_naive_attention_matches():
    assert_naive_attention_matches(build_tiny().eval(), torch.randn(1, 3, 64, 96))


def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='TNT', arch=TINY))


# ------------------------------------------------------------------------------------------------------------ parity
def test_parity_on_fixture_then_other_sizes(fixture):
    model = assert_parity(fixture, skipped=('logits', ), ok=('block3', 'block7', 'block11', 'inner_last', 'norm'))
    assert_pyramid(model, ((224, 320), (100, 131)))  # the fixture's weights at other sizes


def test_parity_adapter_infers_variant_from_keys(fixture):
    """The adapter reads any fixture of the format: widths, depth, qkv bias, heads, grid of the table."""
    tiny = TNT(arch=dict(TINY, qkv_bias=True), pretrain_img_size=(64, 96))
    keys = [[k, list(v.shape), str(v.dtype)] for k, v in to_official(tiny.state_dict()).items()]
    fake = dict(fixture, keys=keys, variant='custom', input_hw=[70, 100],
                outputs={'block1': None, 'block3': None, 'inner_last': None, 'norm': None})
    adapter = parity_adapter(fake)
    model = adapter.build()
    # unless named: 64 channels per outer head and 4 inner heads (the official rule)
    assert model.arch_settings == dict(TINY, qkv_bias=True, num_heads=1, inner_heads=4)
    assert model.pretrain_grid == (4, 6) and len(model.blocks) == 4
    load_pretrained(model, official_state_dict(fake))
    outs = adapter.outputs(model.eval(), torch.randn(1, 3, 70, 100))
    assert set(outs) == {'block1', 'block3', 'inner_last', 'norm'}
    assert outs['inner_last'].shape == (1, 8, 16, 24) and outs['norm'].shape == (1, 32, 4, 6)
    # the official names give the official heads; a 384x384 square table gives the 24x24 grid
    keys = [list(k) for k in fixture['keys']]
    keys[2] = ['outer_pos', [1, 577, 384], 'torch.float32']
    model = parity_adapter(dict(fixture, keys=keys, input_hw=[384, 384])).build()
    assert model.pretrain_grid == (24, 24) and model.arch_settings['num_heads'] == 6


# ------------------------------------------------------------------------------------------------------- checkpoints
def build_seeded(**kwargs):
    torch.manual_seed(0)  # the same initialisation of the (new) pyramid adapter in every model
    return TNT(**dict(dict(arch=TINY), **kwargs))


@pytest.fixture(scope='module')
def tiny_official(fixture):
    keys = [[k, list(v.shape), str(v.dtype)] for k, v in to_official(TNT(arch=TINY).state_dict()).items()]
    return official_state_dict(dict(fixture, keys=keys))


def test_checkpoint_forms(tiny_official, tmp_path):
    """Official-layout weights (the fixture rule on the layout of a tiny variant: TNT-S through seven forms is slow
    on 2 cores) load flat, wrapped and prefixed; timm's renamed layout gives the same weights."""
    assert_checkpoint_forms(build_seeded, tiny_official, str(tmp_path))
    reference = build_seeded()
    load_pretrained(reference, tiny_official)
    model = build_seeded()
    report = load_pretrained(model, {'state_dict': to_timm(tiny_official)})
    assert not report.missing and not report.unexpected
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_converter(official, tiny_official):
    converted = TNT.convert_checkpoint(official)
    assert not any(k.startswith('head.') or k == 'outer_tokens' or '.qk.' in k or '_attn.' in k for k in converted)
    assert TNT.convert_checkpoint(converted) == converted  # idempotent
    qkv = converted['blocks.3.outer.attn.qkv.weight']
    torch.testing.assert_close(qkv, torch.cat([official['blocks.3.outer_attn.qk.weight'],
                                               official['blocks.3.outer_attn.v.weight']]), rtol=0, atol=0)
    with torch.device('meta'):
        model = TNT(arch='s')
    result = model.load_state_dict(converted, strict=False, assign=True)
    assert not result.unexpected_keys and all(k.startswith('pyramid.') for k in result.missing_keys)
    # timm's layout converts to the same dict
    timm_converted = TNT.convert_checkpoint(to_timm(tiny_official))
    assert timm_converted.keys() == TNT.convert_checkpoint(tiny_official).keys()


def test_timm_model_weights_give_timm_outputs():
    """timm's own (non-legacy) TNT, a second implementation of the official maths: its state dict loads through
    the converter and our blocks and final norm reproduce its intermediates; its legacy model is refused."""
    from timm.models.tnt import TNT as TimmTNT
    arch = dict(embed_dim=32, inner_dim=8, depth=2, num_heads_outer=2, num_heads_inner=2)  # timm: inner MLP x4
    torch.manual_seed(0)
    reference = TimmTNT(img_size=(64, 96), num_classes=5, **arch).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.2 * torch.randn_like(param))  # beyond the init (LN weights 1, biases 0)
    model = TNT(arch=dict(embed_dims=32, inner_dims=8, depth=2, num_heads=2, inner_heads=2),
                pretrain_img_size=(64, 96))
    report = load_pretrained(model, reference.state_dict())
    assert not report.missing and not report.unexpected
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        final, (block0, block1) = reference.forward_intermediates(x, indices=[0, 1])
        ours = model.eval().forward_intermediates(x, block_indices=[0, 1])
    torch.testing.assert_close(ours['block0'], block0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours['block1'], block1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours['feature'], tokens_to_map(final[:, 1:], (4, 6)), rtol=1e-5,
                               atol=1e-5)
    legacy = TimmTNT(img_size=(64, 96), legacy=True, **arch)
    with pytest.raises(CheckpointError, match='legacy'):
        load_pretrained(build_tiny(), legacy.state_dict())


def test_checkpoint_errors():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)
    assert 'releases/download/tnt/tnt_s_81.5.pth.tar' in TNT.weights_hint


def test_outer_pos_resized_at_load():
    """A checkpoint made at 384 loads into a model built for 224 (and back), bicubic on the grid, class kept."""
    large = TNT(arch=TINY, pretrain_img_size=384)
    small = TNT(arch=TINY)
    official = to_official(large.state_dict())
    load_pretrained(small, official)
    expected = resize_grid_embed(official['outer_pos'], (24, 24), (14, 14), num_extra_tokens=1)
    torch.testing.assert_close(small.outer_pos, expected, rtol=0, atol=0)
    torch.testing.assert_close(small.outer_pos[:, 0], official['outer_pos'][:, 0], rtol=0, atol=0)
    copied = copy.deepcopy(small)  # the hook of a copy resizes to the copy's table
    copied.pretrain_grid = (12, 12)
    copied.outer_pos = torch.nn.Parameter(torch.zeros(1, 145, 32))
    copied.load_state_dict(small.state_dict(), strict=False)
    assert copied.outer_pos.shape == (1, 145, 32)


def test_outer_pos_at_run_time_is_cached(monkeypatch):
    model = build_tiny().eval()
    calls = spy_calls(monkeypatch, 'resize_grid_embed', single_scale_module,
                      record=lambda *args, **kwargs: args[1:3])
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
        model(torch.randn(2, 3, 64, 96))
        assert calls == [((14, 14), (4, 6))]
        model(torch.randn(1, 3, 96, 64))
        assert len(calls) == 2
        model(torch.randn(1, 3, 224, 224))  # the table at the pretraining grid is used as it is
        assert len(calls) == 2
        # a new checkpoint invalidates the cache
        model.load_state_dict({k: v + 1 if k == 'outer_pos' else v for k, v in model.state_dict().items()})
        model(torch.randn(1, 3, 64, 96))
        assert len(calls) == 3


# ---------------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)
    model = build_tiny(frozen_stages=frozen_stages).train()
    frozen = {p for p in model.parameters() if not p.requires_grad}
    stem = set(model.patch_embed.parameters()) | set(model.to_sentence.parameters())
    assert stem | {model.cls_token, model.outer_pos, model.inner_pos} <= frozen
    assert set(model.blocks[:frozen_stages].parameters()) <= frozen  # 1 block per stage
    assert not set(model.blocks[frozen_stages:].parameters()) & frozen
    assert (model.norm.weight in frozen) == (frozen_stages == 4)


def test_with_cp_equivalent():
    assert_with_cp_equivalent(build_tiny)
    assert_with_cp_equivalent(clone_build(build_tiny, window_size=3, window_block_indexes=(1, ),
                                          use_word_fine_maps=True), size=(70, 93))


def test_drop_path_in_training():
    model = build_tiny(drop_path_rate=0.3).train()
    assert model.blocks[-1].inner.drop_path.drop_prob == pytest.approx(0.3)
    assert model.blocks[-1].outer.drop_path.drop_prob == pytest.approx(0.3)
    assert isinstance(model.blocks[0].outer.drop_path, torch.nn.Identity)
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()


def test_bad_inputs_rejected():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, num_heads=3)), dict(arch=dict(TINY, inner_heads=3)), dict(arch=dict(embed_dims=32)),
        dict(arch=dict(TINY, mlp_ratio=0)), dict(feature_block=4), dict(window_block_indexes=(0, )),
        dict(window_size=4, window_block_indexes=(9, )), dict(pretrain_img_size=8), dict(drop_path_rate=1.5)])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    for name in ('patch_embed.proj.weight', 'to_sentence.proj.weight', 'inner_pos', 'outer_pos', 'cls_token'):
        assert model.get_layer_depth(name) == (0, 6), name
    assert model.get_layer_depth('blocks.2.inner.attn.qkv.weight') == (3, 6)
    assert model.get_layer_depth('blocks.2.to_sentence.proj.weight') == (3, 6)
    assert model.get_layer_depth('pyramid.up2.weight') == (5, 6)
    assert model.get_layer_depth('norm.weight') == (5, 6)


# ----------------------------------------------------------------------------------------------------------- options
def test_word_fine_maps():
    model = build_tiny(use_word_fine_maps=True).eval()
    assert model.out_channels == (8, 16, 32, 32)
    with torch.no_grad():
        x = torch.randn(1, 3, 70, 90)
        outs = model(x)
        words = model.forward_intermediates(x)['words']
        torch.testing.assert_close(outs[0], model.pyramid.up4(words)[..., :18, :23])
        torch.testing.assert_close(outs[1], model.pyramid.up2(F.pixel_unshuffle(words, 2))[..., :9, :12])
        assert torch.equal(tnt_module.space_to_depth2(words), F.pixel_unshuffle(words, 2))
    assert [tuple(o.shape[1:]) for o in outs] == list(pyramid_shapes(model, 70, 90))


def test_feature_block_and_final_norm(tiny_official):
    model = TNT(arch=TINY, feature_block=-3, final_norm=False)
    assert len(model.blocks) == 2 and model.norm is None and model.num_layers == 2
    report = load_pretrained(model, tiny_official)
    assert report.unexpected and all(k.startswith(('blocks.2.', 'blocks.3.', 'norm.')) for k in report.unexpected)
    full = TNT(arch=TINY)
    load_pretrained(full, tiny_official)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        got = model.eval().forward_intermediates(x)['feature']
        torch.testing.assert_close(got, full.eval().forward_intermediates(x, block_indices=[1])['block1'])


def test_windowed_attention_equals_global_when_one_window_covers_the_grid():
    reference = build_tiny(drop_path_rate=0.).eval()
    x = torch.randn(2, 3, 64, 80)  # grid 4x5
    with torch.no_grad():
        expected = reference(x)
        model = build_tiny(drop_path_rate=0., window_size=5, window_block_indexes=(0, 1, 2, 3)).eval()
        model.load_state_dict(reference.state_dict())
        for a, b in zip(model(x), expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

"""T2T-ViT backbone: pyramid contract, official checkpoints, parity, size handling, training switches."""
import copy
import re

import pytest
import torch

import mmvit_backbones.models.backbones.single_scale as single_scale_module
import mmvit_backbones.models.backbones.t2t_vit as t2t_module
import mmvit_backbones.models.layers.transformer as transformer_module
from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models import T2TViT
from mmvit_backbones.models.layers import resize_grid_embed
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
    spy_calls,
)
from mmvit_backbones.testing.parity import official_state_dict, parity_adapter
from mmvit_backbones.testing.parity.t2t_vit import arch_from_official_keys

FIXTURE = 't2t_vit_14_224.pt'
# Tiny custom variants with every piece of the official design (both T2T layer kinds) for fast contract tests.
TINY = dict(embed_dims=32, depth=4, num_heads=2, mlp_ratio=2., token_dims=16)
TINY_T = dict(TINY, t2t_type='transformer')
build_tiny = clone_build(T2TViT, arch=TINY, drop_path_rate=0.1)
build_tiny_t = clone_build(T2TViT, arch=TINY_T, drop_path_rate=0.1)


def to_official(state: dict, transformer: bool) -> dict:
    """Our key layout -> the official one (the inverse of the converter), with a classifier head added."""
    out = {}
    for key, value in state.items():
        if key.startswith('pyramid.'):
            continue
        key = re.sub(r'^t2t\.attn(\d)\.', r'tokens_to_token.attention\1.', key)
        key = key.replace('t2t.project.', 'tokens_to_token.project.')
        if transformer:
            key = re.sub(r'(attention\d)\.(qkv|proj)\.', r'\1.attn.\2.', key)
        else:
            key = re.sub(r'(attention\d)\.mlp\.fc1\.', r'\1.mlp.0.', key)
            key = re.sub(r'(attention\d)\.mlp\.fc2\.', r'\1.mlp.2.', key)
        out[key] = value.clone()
    dims = state['cls_token'].shape[-1]
    out['head.weight'], out['head.bias'] = torch.randn(10, dims), torch.zeros(10)
    return out


# ------------------------------------------------------------------------------------------------------ shapes
def test_pyramid_at_odd_and_large_sizes():
    assert_pyramid(build_tiny(), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build_tiny(out_indices=(1, 3), use_t2t_fine_maps=True), ((97, 61), ), batch=2)
    assert_pyramid(build_tiny(window_size=3, window_block_indexes=(0, 2)), ODD_SIZES)
    # the transformer T2T layer is global softmax attention at stride 4: keep its sizes small on CPU
    assert_pyramid(build_tiny_t(out_indices=(0, 2)), ODD_SIZES)


def test_official_variants_build():
    # README #params (with the 1000-class head, without our pyramid adapter); built on the meta device for speed
    for arch, params in (('7', 4.3), ('10', 5.9), ('12', 6.9), ('14', 21.5), ('19', 39.2), ('24', 64.1),
                         ('t_14', 21.5), ('t_19', 39.2), ('t_24', 64.1)):
        with torch.device('meta'):
            model = T2TViT(arch=arch)
        dims = model.embed_dims
        assert model.out_channels == (dims // 4, dims // 2, dims, dims)
        pyramid = sum(p.numel() for p in model.pyramid.parameters())
        total = sum(p.numel() for p in model.parameters()) - pyramid + dims * 1000 + 1000
        assert abs(total / 1e6 - params) < 0.1, (arch, total)
    assert T2TViT.resolve_arch('t2t_vit_t_14') == T2TViT.resolve_arch('t_14')


def test_official_smallest_variant_runs():
    # (800x1333 takes > 10 s on a loaded 2-core CPU; the tiny variant covers the large sizes)
    assert_pyramid(T2TViT(arch='7', window_size=8, window_block_indexes=(0, 3)), ((320, 479), ))


def test_padding_to_multiple_of_4():
    """Sizes that are not multiples of 4 are zero-padded at the bottom/right (no cropping of the T2T maps)."""
    model = build_tiny().eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 70, 93)
        padded = torch.nn.functional.pad(x, (0, 3, 0, 2))
        ours, ref = model.forward_intermediates(x), model.forward_intermediates(padded, official_grid=True)
        for key in ('stride4', 'stride8', 'feature'):
            torch.testing.assert_close(ours[key], ref[key])
        assert ours['stride4'].shape[-2:] == (18, 24) and ours['feature'].shape[-2:] == (5, 6)
        # the official grid floor((H-3)/4)+1 is used only with official_grid
        assert model.forward_intermediates(x, official_grid=True)['stride4'].shape[-2:] == (17, 23)


def test_all_softmax_attention_goes_through_shared_core(monkeypatch):
    # the T2T mixers call it from this module, the ViT blocks from the shared transformer layers
    calls = spy_calls(monkeypatch, 'attention', t2t_module, transformer_module)
    with torch.no_grad():
        build_tiny().eval()(torch.randn(1, 3, 64, 64))
        assert len(calls) == TINY['depth']  # blocks; the Performer T2T layers are linear attention
        calls.clear()
        build_tiny_t().eval()(torch.randn(1, 3, 64, 64))
        assert len(calls) == TINY['depth'] + 2


# ---------------------------------------------------------------------------------------------------- registries
def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='T2TViT', arch=TINY))


# -------------------------------------------------------------------------------------------------------- parity
def test_parity_on_fixture_then_non_square(fixture):
    model = assert_parity(fixture)
    # the fixture's weights at a non-square size
    assert_pyramid(model, ((224, 320), ))
    with torch.no_grad():
        feats = model.eval().forward_intermediates(torch.randn(1, 3, 224, 320))
    assert feats['feature'].shape == (1, 384, 14, 20) and feats['stride4'].shape == (1, 64, 56, 80)


def test_parity_adapter_infers_variant_from_keys(fixture):
    """The adapter reads any fixture of the format: width, depth, T2T kind, token width, grid of the table."""
    # a transformer-T2T variant of another width/depth in the official layout, at a non-square size
    tiny = T2TViT(arch=TINY_T, pretrain_img_size=(64, 96))
    keys = [[k, list(v.shape), str(v.dtype)] for k, v in to_official(tiny.state_dict(), True).items()]
    fake = dict(fixture, keys=keys, variant='custom', input_hw=[64, 96],
                outputs={'t2t_stride4': None, 'block1': None, 'block3': None, 'norm': None})
    adapter = parity_adapter(fake)
    model = adapter.build()
    assert model.arch_settings == T2TViT.resolve_arch(dict(TINY_T, qkv_bias=False, num_heads=1))  # 64-wide heads
    assert model.pretrain_grid == (4, 6) and len(model.blocks) == 4
    load_pretrained(model, official_state_dict(fake))
    outs = adapter.outputs(model.eval(), torch.randn(1, 3, 64, 96))
    assert set(outs) >= {'t2t_stride4', 't2t_stride8', 'tokens', 'block1', 'block3', 'norm'}
    assert outs['t2t_stride4'].shape == (1, 16, 16, 24) and outs['norm'].shape == (1, 32, 4, 6)
    # an official name gives the official heads; a 384x384 square table gives the 24x24 grid
    keys = [list(k) for k in fixture['keys']]
    keys[1] = ['pos_embed', [1, 577, 384], 'torch.float32']
    model = parity_adapter(dict(fixture, keys=keys, variant='t2t_vit_14', input_hw=[384, 384])).build()
    assert model.pretrain_grid == (24, 24) and model.arch_settings['num_heads'] == 6
    arch = arch_from_official_keys({k: s for k, s, _ in fixture['keys']}, 'T2t_vit_14_resnext')
    assert arch['num_heads'] == 32 and arch['t2t_type'] == 'performer' and arch['kernel_ratio'] == 0.5


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(fixture, tmp_path):
    """Official-layout weights (the fixture rule, on the key layout of a tiny variant of each T2T kind: the
    t2t_vit_14 fixture's 21M weights take a minute through the seven forms on 2 cores)."""
    for arch, transformer in ((TINY, False), (TINY_T, True)):
        keys = [[k, list(v.shape), str(v.dtype)] for k, v in to_official(T2TViT(arch=arch).state_dict(),
                                                                         transformer).items()]

        def build(**kwargs):  # the same initialisation of the (new) pyramid adapter in every model
            torch.manual_seed(0)
            return T2TViT(arch=arch, **kwargs)

        assert_checkpoint_forms(build, official_state_dict(dict(fixture, keys=keys)), str(tmp_path))


def test_converter(official):
    converted = T2TViT.convert_checkpoint(official)
    assert not any(k.startswith(('head.', 'tokens_to_token.')) for k in converted)
    assert T2TViT.convert_checkpoint(converted) == converted  # idempotent
    model = T2TViT(arch='14')
    result = model.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys and all(k.startswith('pyramid.') for k in result.missing_keys)
    # the transformer-T2T layout converts too
    tiny = T2TViT(arch=TINY_T)
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith('pyramid.')}
    converted = T2TViT.convert_checkpoint(to_official(state, True))
    assert list(converted) == list(state) and all(torch.equal(converted[k], state[k]) for k in state)


def test_performer_features_are_loaded_not_redrawn():
    torch.manual_seed(1)
    official = to_official(T2TViT(arch=TINY).state_dict(), transformer=False)
    torch.manual_seed(2)
    model = T2TViT(arch=TINY)
    assert 't2t.attn1.w' in model.state_dict() and not any(n.endswith('.w') for n, _ in model.named_parameters())
    assert not torch.equal(model.t2t.attn1.w, official['tokens_to_token.attention1.w'])
    load_pretrained(model, official)
    torch.testing.assert_close(model.t2t.attn1.w, official['tokens_to_token.attention1.w'], rtol=0, atol=0)
    torch.testing.assert_close(model.t2t.attn2.w, official['tokens_to_token.attention2.w'], rtol=0, atol=0)


def test_checkpoint_errors():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)
    assert 'releases/download/main/81.5_T2T_ViT_14.pth.tar' in T2TViT.weights_hint


def test_position_table_resized_at_load():
    """A checkpoint made at 224 loads into a model built for 384 (and back), bicubic on the grid, cls kept."""
    small = T2TViT(arch=TINY)
    large = T2TViT(arch=TINY, pretrain_img_size=384)
    official = to_official(small.state_dict(), transformer=False)
    load_pretrained(large, official)
    expected = resize_grid_embed(official['pos_embed'], (14, 14), (24, 24), num_extra_tokens=1)
    torch.testing.assert_close(large.pos_embed, expected, rtol=0, atol=0)
    torch.testing.assert_close(large.pos_embed[:, 0], official['pos_embed'][:, 0], rtol=0, atol=0)
    back = T2TViT(arch=TINY)
    load_pretrained(back, large.state_dict())
    assert back.pos_embed.shape == (1, 197, 32)
    copied = copy.deepcopy(large)  # the hook of a copy resizes to the copy's table
    copied.pretrain_grid = (12, 12)
    copied.pos_embed = torch.nn.Parameter(torch.zeros(1, 145, 32), requires_grad=False)
    copied.load_state_dict(large.state_dict())
    assert copied.pos_embed.shape == (1, 145, 32)


def test_position_table_at_run_time_is_cached(monkeypatch):
    model = build_tiny().eval()
    calls = []
    original = single_scale_module.resize_grid_embed

    def counting(*args, **kwargs):
        calls.append(tuple(args[1:3]))
        return original(*args, **kwargs)

    monkeypatch.setattr(single_scale_module, 'resize_grid_embed', counting)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
        model(torch.randn(2, 3, 64, 96))
        assert calls == [((14, 14), (4, 6))]
        model(torch.randn(1, 3, 96, 64))
        assert len(calls) == 2
        # the table at the pretraining size is used as it is, and matches a direct resize elsewhere
        table = model.position_embedding((4, 6))
        torch.testing.assert_close(table, original(model.pos_embed, (14, 14), (4, 6), num_extra_tokens=1))
        # a new checkpoint invalidates the cache
        model.load_state_dict({k: v + 1 if k == 'pos_embed' else v for k, v in model.state_dict().items()})
        model(torch.randn(1, 3, 64, 96))
        assert len(calls) == 3
        assert model.position_embedding((14, 14)) is model.pos_embed


# ------------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)
    model = build_tiny(frozen_stages=frozen_stages).train()
    blocks = set(model.blocks[:frozen_stages].parameters()) if frozen_stages else set()  # 1 block per stage
    frozen = {p for p in model.parameters() if not p.requires_grad}
    assert set(model.t2t.parameters()) <= frozen and model.cls_token in frozen and blocks <= frozen
    assert (model.norm.weight in frozen) == (frozen_stages == 4)


def test_stages_are_quarters_of_depth():
    def bounds(model):
        return tuple(model.stage_blocks(s).start for s in range(1, 5)) + (model.stage_blocks(4).stop, )

    with torch.device('meta'):
        assert bounds(T2TViT(arch='14')) == (0, 3, 7, 10, 14)
        assert bounds(T2TViT(arch='24')) == (0, 6, 12, 18, 24)
        assert bounds(T2TViT(arch='14', feature_block=7)) == (0, 2, 4, 6, 8)


@pytest.mark.parametrize('build', [build_tiny, build_tiny_t])
def test_with_cp_equivalent(build):
    assert_with_cp_equivalent(build)
    assert_with_cp_equivalent(clone_build(build, window_size=3, window_block_indexes=(1, )), size=(70, 93))


def test_drop_path_and_dropout_in_training():
    model = build_tiny(drop_path_rate=0.3).train()
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(0.3)
    assert model.t2t.attn1.drop.p == 0.1  # the official Performer dropout
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()


def test_autocast_keeps_performer_finite():
    model = build_tiny().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 64, 64) * 20)
    assert all(torch.isfinite(o.float()).all() for o in outs)


def test_bad_inputs_rejected():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, t2t_type='conv')), dict(arch=dict(TINY, num_heads=3)), dict(arch=dict(embed_dims=32)),
        dict(feature_block=4), dict(window_block_indexes=(0, )), dict(window_size=4, window_block_indexes=(9, )),
        dict(pretrain_img_size=8), dict(drop_path_rate=1.5)])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.get_layer_depth('t2t.attn1.kqv.weight') == (0, 6)
    assert model.get_layer_depth('cls_token') == (0, 6)
    assert model.get_layer_depth('blocks.2.attn.qkv.weight') == (3, 6)
    assert model.get_layer_depth('pyramid.up2.weight') == (5, 6)
    assert model.get_layer_depth('norm.weight') == (5, 6)


# ----------------------------------------------------------------------------------------------------- options
def test_windowed_attention_equals_global_when_one_window_covers_the_grid():
    """Same weights; a window covering the whole grid (even with masked padding) reproduces global attention."""
    reference = build_tiny(drop_path_rate=0.).eval()
    x = torch.randn(2, 3, 64, 80)  # grid 4x5
    with torch.no_grad():
        expected = reference(x)
        for window in (5, 8):
            model = build_tiny(drop_path_rate=0., window_size=window, window_block_indexes=(0, 1, 2, 3)).eval()
            model.load_state_dict(reference.state_dict())
            for a, b in zip(model(x), expected):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # smaller windows change the result but keep the weights' meaning
        model = build_tiny(drop_path_rate=0., window_size=2, window_block_indexes=(0, 2)).eval()
        assert set(model.state_dict()) == set(reference.state_dict())


def test_feature_block_and_final_norm():
    official = to_official(T2TViT(arch=TINY).state_dict(), transformer=False)
    model = T2TViT(arch=TINY, feature_block=-3, final_norm=False)
    assert len(model.blocks) == 2 and model.norm is None and model.num_layers == 2
    report = load_pretrained(model, official)
    assert report.unexpected and all(k.startswith(('blocks.2.', 'blocks.3.', 'norm.')) for k in report.unexpected)
    full = T2TViT(arch=TINY, final_norm=True)
    load_pretrained(full, official)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        got = model.eval().forward_intermediates(x)['feature']
        torch.testing.assert_close(got, full.eval().forward_intermediates(x, block_indices=[1])['block1'])


def test_fine_maps_from_t2t_module():
    model = build_tiny(use_t2t_fine_maps=True).eval()
    assert model.out_channels == (8, 16, 32, 32)
    with torch.no_grad():
        x = torch.randn(1, 3, 70, 90)
        outs = model(x)
        feats = model.forward_intermediates(x)
        torch.testing.assert_close(outs[0], model.pyramid.up4(feats['stride4']))
    assert [tuple(o.shape[1:]) for o in outs] == list(pyramid_shapes(model, 70, 90))

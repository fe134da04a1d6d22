"""GC ViT backbone: pyramid at any size, registries, parity, checkpoints, freezing, checkpointing, resizing."""
import math

import pytest
import torch

from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models.backbones.gcvit import GCViT, WindowAttention, num_query_pools, relative_position_index
from mmvit_backbones.models.layers import resize_relative_position_table
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
)
from mmvit_backbones.testing.parity import fixture_input
from mmvit_backbones.testing.parity.gcvit import arch_from_official_keys

FIXTURE = 'gcvit_xxtiny_224.pt'
# two blocks per level so that every level has a local and a global block
TINY = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], mlp_ratio=2, layer_scale=1e-5)
build = clone_build(GCViT, arch=TINY, drop_path_rate=0.1)


def _official_layout(arch) -> dict:
    """Shapes of an official state dict of ``arch`` (ours + the classifier's index buffers, final norm and head)."""
    with torch.device('meta'):  # shapes only
        model = GCViT(arch=arch, out_indices=(3, ))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith('norm3.')}
    for name, module in model.named_modules():
        if isinstance(module, WindowAttention):
            n = module.window ** 2
            shapes[f'{name}.relative_position_index'] = (n, n)
    c = model.out_channels[3]
    shapes.update({'norm.weight': (c, ), 'norm.bias': (c, ), 'head.weight': (1000, c), 'head.bias': (1000, )})
    return shapes


# ------------------------------------------------------------------------------------------------------- shapes
def test_pyramid_odd_and_large_sizes():
    assert_pyramid(build(), ODD_SIZES, batch=2)
    assert_pyramid(build(window_size=24), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build(out_indices=(1, 3), query_resize_mode='adaptive_max', adaptive_query_pool=False),
                   ODD_SIZES)


def test_query_generator_counts_match_official():
    # official: 3/2/1/1 FeatExtract modules (pooling in the first two levels) for every released model
    for arch in ('xxt', 't', 's', 'b', 'l', 'l-384', 'l-512'):
        with torch.device('meta'):  # structure only
            model = GCViT(arch=arch, out_indices=(0, ))
        assert model.query_pools == (3, 2, 0, 0), arch
        assert [len(level.q_global_gen.to_q_global) for level in model.levels] == [3, 2, 1, 1]
    assert num_query_pools(56, 7) == 3 and num_query_pools(14, 14) == 0


def test_global_query_is_one_window_at_any_size():
    model = build(window_size=(5, 6, 7, 3)).eval()
    x = torch.randn(2, 16, 37, 61)
    gen = model.levels[0].q_global_gen
    q = gen(x)
    assert q.shape == (2, 1, 25, 16)


# --------------------------------------------------------------------------------------------------- registries
def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='GCViT', arch=TINY))


# ------------------------------------------------------------------------------------------------------- parity
def test_parity_fixture(fixture):
    assert_parity(fixture, ok=('stage0', 'stage1', 'stage2', 'stage3'))


def test_parity_adapter_infers_other_variants(fixture):
    def same(a: dict, b: dict) -> bool:  # lists and tuples alike
        return {k: tuple(v) if isinstance(v, list) else v for k, v in a.items()} == \
            {k: tuple(v) if isinstance(v, list) else v for k, v in b.items()}

    assert same(arch_from_official_keys({k: tuple(s) for k, s, _ in fixture['keys']}),
                dict(GCViT.resolve_arch('xxt'), mlp_ratio=3.0))
    for arch in ('s', 'b', 'l-384'):
        got = arch_from_official_keys(_official_layout(arch))
        want = GCViT.resolve_arch(arch)
        assert same(got, dict(want, mlp_ratio=float(want['mlp_ratio']))), arch
    # a non-standard custom variant at 448 with windows 14/14/28/14
    custom = dict(TINY, window_size=[14, 14, 28, 14], resolution=448)
    assert same(arch_from_official_keys(_official_layout(custom)), dict(GCViT.resolve_arch(custom), mlp_ratio=2.0))
    assert arch_from_official_keys(_official_layout(custom), resolution=448)['resolution'] == 448


def test_fixture_weights_run_non_square(fixture, official):
    model = GCViT(arch='xxt', init_cfg=dict(type='Pretrained', checkpoint=official), drop_path_rate=0.)
    model.init_weights()
    assert_pyramid(model, [(224, 320)])


def test_detection_window_close_to_classifier_at_224(fixture, official):
    """Window 24 resizes the tables and the global queries; the features stay correlated with the classifier's."""
    x = fixture_input(fixture)
    ref = GCViT(arch='xxt', drop_path_rate=0.)
    det = GCViT(arch='xxt', drop_path_rate=0., window_size=24)
    for model in (ref, det):
        load_pretrained(model, official)
        model.eval()
    with torch.no_grad():
        a, b = ref.forward_levels(x)[0], det.forward_levels(x)[0]
    assert torch.isfinite(b).all()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.5


# -------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official, tmp_path):
    assert_checkpoint_forms(clone_build(GCViT, arch='xxt', drop_path_rate=0.), official, str(tmp_path))


def test_checkpoint_errors():
    assert_missing_checkpoint_error(build)
    assert_foreign_checkpoint_error(build)


def test_convert_is_idempotent(official):
    once = GCViT.convert_checkpoint(official)
    assert not any(k.startswith(('head.', 'norm.')) or k.endswith('relative_position_index') for k in once)
    assert GCViT.convert_checkpoint(once).keys() == once.keys()


def test_tables_resized_at_load_and_index_regenerated(official):
    """A checkpoint with 7/14 windows loads into a model built for window 24 (and back)."""
    model = GCViT(arch='xxt', window_size=24)
    report = load_pretrained(model, official)
    assert not report.missing and not report.unexpected
    key = 'levels.2.blocks.1.attn.relative_position_bias_table'
    table = model.state_dict()[key]
    assert table.shape == (47 ** 2, 8)
    torch.testing.assert_close(table, resize_relative_position_table(official[key], (14, 14), (24, 24)))
    attn = model.levels[2].blocks[1].attn
    assert torch.equal(attn.relative_position_index, relative_position_index(24))
    assert 'levels.0.blocks.0.attn.relative_position_index' not in model.state_dict()
    # the official detector's checkpoint layout (backbone.*, 24-window tables, norm{i}) loads into window 7 again
    det_state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    det_state['backbone.levels.0.blocks.0.attn.relative_position_index'] = relative_position_index(24)
    det_state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 64, 1, 1)
    back = GCViT(arch='xxt')
    report = load_pretrained(back, {'state_dict': det_state})
    assert not report.missing and not report.unexpected
    assert torch.equal(back.norm0.weight, model.norm0.weight)
    assert back.state_dict()[key].shape == (27 ** 2, 8)
    # a direct load_state_dict of an official-layout dict (index buffers included) leaves nothing unexpected
    result = GCViT(arch='xxt').load_state_dict(
        {k: v for k, v in official.items() if not k.startswith(('head.', 'norm.'))}, strict=False)
    assert not result.unexpected_keys and all(k.startswith(GCViT.new_param_prefixes) for k in result.missing_keys)


def test_fixture_index_buffers_equal_ours(fixture):
    for key, value in fixture['int_buffers'].items():
        assert torch.equal(relative_position_index(math.isqrt(value.shape[0])), value), key


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build, frozen_stages)


def test_with_cp_equivalent():
    assert_with_cp_equivalent(build, size=(40, 72))


def test_bad_inputs():
    assert_bad_inputs_rejected(build, bad_arch_kwargs=[
        dict(window_size=0), dict(window_size=(7, 7)), dict(query_resize_mode='lanczos'),
        dict(arch=dict(TINY, depths=[2, 2, 2])), dict(arch=dict(TINY, num_heads=[3, 2, 2, 4])),
        dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1])), dict(drop_path_rate=1.5)])


def test_layer_depths():
    model = build()
    assert_layer_depths(model)
    assert model.num_layers == 8
    assert model.get_layer_depth('patch_embed.proj.weight')[0] == 0
    assert model.get_layer_depth('levels.1.blocks.0.attn.qkv.weight')[0] == 3
    assert model.get_layer_depth('levels.1.q_global_gen.to_q_global.0.conv.0.weight')[0] == 3
    assert model.get_layer_depth('levels.1.downsample.reduction.weight')[0] == 4
    assert model.get_layer_depth('norm2.weight')[0] == 9


def test_bias_cache_at_inference_only():
    model = build().eval()
    attn = model.levels[0].blocks[0].attn
    with torch.no_grad():
        first = attn.bias()
        assert attn.bias() is first  # cached
        model(torch.randn(1, 3, 64, 64))
        assert attn.bias() is first
    with torch.no_grad():
        attn.relative_position_bias_table.add_(1.0)  # an in-place update (optimizer step) invalidates the entry
        assert attn.bias() is not first
    model.train()
    assert attn.bias().requires_grad  # during training, recomputed with gradient

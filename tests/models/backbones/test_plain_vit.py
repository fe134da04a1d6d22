"""PlainViT (DINO ViT + ViTDet simple feature pyramid): the backbone contract, parity, checkpoints, resizing."""
import copy

import pytest
import torch

from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models.backbones.plain_vit import PlainViT
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
)
from mmvit_backbones.testing.parity import official_state_dict, parity_adapter

FIXTURE = 'dino_vits16_224.pt'
TINY = dict(embed_dims=32, depth=4, num_heads=2)
build_tiny = clone_build(PlainViT, arch=TINY, pretrain_img_size=64)


def build_small(**kwargs):
    torch.manual_seed(0)  # the pyramid (not in ImageNet checkpoints) is randomly initialised: same init per build
    return PlainViT(**dict(dict(arch='s'), **kwargs))


# ViT-S/16 cut to its first 2 blocks: the official layout and widths at a fraction of the cost (checkpoint tests)
S2 = dict(embed_dims=384, depth=2, num_heads=6)
build_s2 = clone_build(build_small, arch=S2)


@pytest.fixture(scope='module')
def official2(official):
    return {k: v for k, v in official.items() if not (k.startswith('blocks.') and int(k.split('.')[1]) >= 2)}


# ------------------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize('patch_size', [16, 8])
def test_pyramid_shapes_any_size(patch_size):
    model = build_tiny(patch_size=patch_size)
    assert model.out_channels == (8, 16, 32, 32)
    assert_pyramid(model, ODD_SIZES + LARGE_SIZES[:1], batch=2)


def test_pyramid_shapes_detection_size_and_windows():
    # windowed attention in 3 of 4 blocks, window 7 not dividing the grid (padding masked)
    model = build_tiny(window_size=7, window_block_indexes=(0, 1, 3))
    assert_pyramid(model, ODD_SIZES + LARGE_SIZES)


@pytest.mark.parametrize('out_indices', [(3, ), (1, 2), (0, 3)])
def test_out_indices_subsets(out_indices):
    model = build_tiny(out_indices=out_indices)
    assert_pyramid(model, [(97, 131)])
    model.train()
    outs = model(torch.randn(1, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


def test_official_variant_at_detection_size():
    # ViTDet's layout: windowed attention (window 14) in all blocks but 2, 5, 8, 11
    model = PlainViT(arch='ti', window_size=14, window_block_indexes=(0, 1, 3, 4, 6, 7, 9, 10)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 800, 1333))
    assert tuple(tuple(o.shape[1:]) for o in outs) == pyramid_shapes(model, 800, 1333)
    assert model.out_channels == (48, 96, 192, 192)
    assert build_s2().out_channels == (96, 192, 384, 384)


def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='PlainViT', arch=TINY, pretrain_img_size=64))


# ------------------------------------------------------------------------------------------------------------ parity
def test_parity_fixture(fixture):
    assert_parity(fixture, skipped=())  # DINO has no head: even `cls` is compared


def _fake_fixture(fixture, dim, depth, patch, grid, variant, hw):
    """The real fixture's format with another variant's state-dict shapes (for the adapter's inference only)."""
    keys = []
    for key, shape, dtype in fixture['keys']:
        if key.startswith('blocks.') and int(key.split('.')[1]) >= depth:
            continue
        shape = [dim * 3 if s == 384 * 3 else dim * 4 if s == 384 * 4 else dim if s == 384 else s for s in shape]
        if key == 'pos_embed':
            shape[1] = 1 + grid * grid
        if key == 'patch_embed.proj.weight':
            shape[2:] = [patch, patch]
        keys.append([key, shape, dtype])
    fake = dict(copy.deepcopy({k: v for k, v in fixture.items() if k not in ('keys', 'outputs')}),
                keys=keys, variant=variant, input_hw=list(hw))
    fake['outputs'] = {f'block{depth - 1}': None, 'norm': None, 'cls': None}
    return fake


@pytest.mark.parametrize('dim,depth,patch,grid,variant,heads', [
    (768, 2, 8, 28, 'vit_base', 12),
    (192, 12, 16, 14, 'vit_tiny', 3),
    (384, 6, 16, 20, 'custom', 6),
])
def test_parity_adapter_infers_variant(fixture, dim, depth, patch, grid, variant, heads):
    fake = _fake_fixture(fixture, dim, depth, patch, grid, variant, (96, 160))
    adapter = parity_adapter(fake)
    model = adapter.build()
    assert (model.embed_dims, len(model.blocks), model.patch_size, model.pretrain_grid) == (dim, depth, patch,
                                                                                           (grid, grid))
    assert model.blocks[0].attn.num_heads == heads
    state = official_state_dict(fake)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith('pyramid.')} == \
        {k: tuple(v.shape) for k, v in PlainViT.convert_checkpoint(state).items()}
    if dim == 192:  # small enough to run: the outputs follow the fixture's names and layout
        load_pretrained(model, state)
        model.eval()
        with torch.no_grad():
            outs = adapter.outputs(model, torch.randn(1, 3, 100, 170))  # not a multiple of the patch
        assert outs[f'block{depth - 1}'].shape == (1, dim, 100 // patch, 170 // patch)
        assert outs['norm'].shape == (1, dim, 100 // patch, 170 // patch) and outs['cls'].shape == (1, dim)


def test_real_fixture_weights_non_square(fixture, official):
    adapter = parity_adapter(fixture)
    model = adapter.build()
    load_pretrained(model, official)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 320))
        tokens = adapter.outputs(model, torch.randn(1, 3, 224, 320))
    assert tuple(tuple(o.shape[1:]) for o in outs) == pyramid_shapes(model, 224, 320)
    assert tokens['norm'].shape == (1, 384, 14, 20)
    assert all(torch.isfinite(t).all() for t in tokens.values())


# ------------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official2, tmp_path):
    assert_checkpoint_forms(build_s2, official2, str(tmp_path), extra_wrappers=('teacher', ))


def test_dino_full_checkpoint_teacher_wins(official2, tmp_path):
    """DINO's *_full_checkpoint.pth: student (DDP, `module.backbone.`) and teacher (`backbone.`) + heads."""
    student = {f'module.backbone.{k}': torch.zeros_like(v) for k, v in official2.items()}
    student['module.head.last_layer.weight_v'] = torch.zeros(65536, 256)
    teacher = {f'backbone.{k}': v for k, v in official2.items()}
    teacher['head.mlp.0.weight'] = torch.zeros(2048, 384)
    path = str(tmp_path / 'full.pth')
    torch.save(dict(student=student, teacher=teacher, epoch=100, optimizer={'state': {}}), path)
    model = build_s2(init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    for key, value in PlainViT.convert_checkpoint(official2).items():
        assert torch.equal(model.state_dict()[key], value), key


def test_deit_checkpoint_with_head_and_dist_token(official2):
    deit = dict(official2)
    deit['head.weight'], deit['head.bias'] = torch.zeros(1000, 384), torch.zeros(1000)
    deit['head_dist.weight'], deit['head_dist.bias'] = torch.zeros(1000, 384), torch.zeros(1000)
    deit['dist_token'] = torch.zeros(1, 1, 384)
    pos = official2['pos_embed']
    deit['pos_embed'] = torch.cat([pos[:, :1], torch.full_like(pos[:, :1], 7.0), pos[:, 1:]], dim=1)
    converted = PlainViT.convert_checkpoint(deit)
    assert not any(k.startswith(('head', 'dist_token')) for k in converted)
    assert torch.equal(converted['pos_embed'], pos)
    assert PlainViT.convert_checkpoint(converted).keys() == converted.keys()  # idempotent
    report = load_pretrained(build_s2(pos_embed_interp='bicubic'), {'model': deit})
    assert not report.missing and not report.unexpected


def test_missing_and_foreign_checkpoints():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)


def test_truncated_model_reports_unused_blocks(official):
    model = build_small(feature_block=5, final_norm=False)
    assert len(model.blocks) == 6 and model.num_layers == 6 and model.norm is None
    report = load_pretrained(model, official)
    assert not report.missing
    assert all(k.startswith(('blocks.', 'norm.')) and (k.startswith('norm.') or int(k.split('.')[1]) >= 6)
               for k in report.unexpected) and report.unexpected


def test_resize_at_load(official2):
    """A 224 checkpoint loads into a model built for 320 with the model's rule, and back."""
    for interp, scale_rule in (('dino', True), ('bicubic', False)):
        model = build_s2(pretrain_img_size=320, pos_embed_interp=interp)
        load_pretrained(model, official2)
        want = resize_grid_embed(official2['pos_embed'], (14, 14), (20, 20), 1, scale_factor_rule=scale_rule)
        torch.testing.assert_close(model.pos_embed.data, want)
    # a checkpoint of a 320 model goes back into a 224 model
    model = build_s2(pretrain_img_size=224)
    model.load_state_dict(build_s2(pretrain_img_size=320).state_dict())
    assert model.pos_embed.shape == (1, 197, 384)


def test_runtime_resize_and_cache(official2):
    model = build_s2()
    load_pretrained(model, official2)
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 320))
        assert len(model._pos_cache._entries) == 1
        first = model.position_embedding((14, 20))
        assert first is model.position_embedding((14, 20))  # cached
        want = resize_grid_embed(model.pos_embed, (14, 14), (14, 20), 1, scale_factor_rule=True)
        torch.testing.assert_close(first, want)
        assert model.position_embedding((14, 14)) is model.pos_embed  # pretraining grid: no resize
        model(torch.randn(1, 3, 200, 320))  # 13x20 grid (padded): another entry
        assert len(model._pos_cache._entries) == 2
    model.train()
    assert model.position_embedding((14, 20)).requires_grad  # training: recomputed, gradient flows to pos_embed


# ---------------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)


def test_frozen_stage_layout():
    build = clone_build(build_tiny, arch=dict(TINY, depth=12))
    model = build(frozen_stages=2)
    assert [list(model.stage_blocks(s)) for s in range(1, 5)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {'cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.5.mlp.fc2.bias'} <= frozen
    assert 'blocks.6.norm1.weight' not in frozen and 'norm.weight' not in frozen
    assert 'norm.weight' in {n for n, p in build(frozen_stages=4).named_parameters() if not p.requires_grad}


@pytest.mark.parametrize('kwargs', [dict(), dict(window_size=3, window_block_indexes=(1, 2)), dict(patch_size=8)])
def test_with_cp_equivalent(kwargs):
    assert_with_cp_equivalent(clone_build(build_tiny, drop_path_rate=0.1, **kwargs))


def test_bad_inputs():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(patch_size=14), dict(arch=dict(embed_dims=30, depth=2, num_heads=4)), dict(arch=dict(depth=2)),
        dict(feature_block=4), dict(pos_embed_interp='nearest'), dict(window_block_indexes=(0, ))])


def test_layer_depths():
    model = clone_build(build_tiny, arch=dict(TINY, depth=12))()
    assert_layer_depths(model)
    assert model.get_layer_depth('backbone.pos_embed', prefix='backbone.') == (0, 14)
    assert model.get_layer_depth('backbone.blocks.0.attn.qkv.weight', prefix='backbone.') == (1, 14)
    assert model.get_layer_depth('backbone.blocks.11.mlp.fc2.bias', prefix='backbone.') == (12, 14)
    assert model.get_layer_depth('backbone.norm.weight', prefix='backbone.') == (13, 14)
    assert model.get_layer_depth('backbone.pyramid.up2.weight', prefix='backbone.') == (13, 14)


# ------------------------------------------------------------------------------------------------------- attention
def test_window_covering_grid_equals_global():
    """A window as large as the padded grid (with masked padding and the cls key) is global attention, and the
    windowed model has the same parameters."""
    torch.manual_seed(0)
    plain = build_tiny()
    windowed = build_tiny(window_size=5, window_block_indexes=(0, 1, 2, 3))
    assert plain.state_dict().keys() == windowed.state_dict().keys()
    windowed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 65, 70)  # 5x5 token grid (image padded to 80x80): exactly one 5x5 window
    plain.eval(), windowed.eval()
    with torch.no_grad():
        for a, b in zip(plain(x), windowed(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    windowed = build_tiny(window_size=6, window_block_indexes=(0, 1, 2, 3)).eval()  # one window, padded to 6x6
    windowed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for a, b in zip(plain(x), windowed(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_windowed_attention_is_local():
    """In a windowed block a patch token only sees its window and the cls token (whose input does not depend on
    the patches), so changing one patch leaves the other windows' outputs untouched."""
    kwargs = dict(arch=dict(TINY, depth=1), final_norm=False, out_indices=(2, ))
    model = build_tiny(window_size=2, window_block_indexes=(0, ), **kwargs).eval()
    global_model = build_tiny(**kwargs).eval()
    global_model.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)  # 4x4 grid, four 2x2 windows
    y = x.clone()
    y[..., 48:, 48:] += 1.0  # the bottom-right patch only
    with torch.no_grad():
        delta = (model(x)[0] - model(y)[0]).abs().sum(1)[0]  # (4, 4)
        global_delta = (global_model(x)[0] - global_model(y)[0]).abs().sum(1)[0]
    assert delta[2:, 2:].min() > 0 and delta[:2].max() == 0 and delta[:, :2].max() == 0
    assert global_delta.min() > 0


def test_pos_embed_interp_modes_differ(official2):
    dino, timm_like = build_s2(), build_s2(pos_embed_interp='bicubic')
    load_pretrained(dino, official2), load_pretrained(timm_like, official2)
    a, b = dino.position_embedding((20, 30)), timm_like.position_embedding((20, 30))
    assert a.shape == b.shape == (1, 601, 384) and not torch.allclose(a, b)
    assert torch.equal(a[:, 0], official2['pos_embed'][:, 0])

"""ResMLP: contract, parity with the official deit model, official/timm checkpoints, any-size token mixing."""
import pytest
import torch
import torch.nn.functional as F

from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models.backbones.resmlp import ResMLP
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

FIXTURE = 'resmlp_12_224.pt'
TINY = dict(embed_dims=32, depth=4, patch_size=16, init_scale=0.1)
build_tiny = clone_build(ResMLP, arch=TINY, pretrain_img_size=64)  # 4x4-token windows
S2 = dict(embed_dims=384, depth=2, patch_size=16, init_scale=0.1)  # ResMLP-S12 cut to 2 blocks


def build_s2(**kwargs):
    torch.manual_seed(0)  # the pyramid (not in ImageNet checkpoints) is randomly initialised: same init per build
    return ResMLP(**dict(dict(arch=S2), **kwargs))


@pytest.fixture(scope='module')
def official2(official):
    return {k: v for k, v in official.items() if not (k.startswith('blocks.') and int(k.split('.')[1]) >= 2)}


# ------------------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize('mode', ['window', 'resample'])
@pytest.mark.parametrize('patch_size', [16, 8])
def test_pyramid_shapes_any_size(mode, patch_size):
    model = build_tiny(arch=dict(TINY, patch_size=patch_size), pretrain_img_size=4 * patch_size, token_mixing=mode)
    # the pyramid starts from the native map: ViTDet's widths follow its scale (x2 up from stride 8: D/2)
    assert model.out_channels == ((16, 32, 32, 32) if patch_size == 8 else (8, 16, 32, 32))
    assert_pyramid(model, ODD_SIZES + ((112, 448), ), batch=2)


def test_patch8_pyramid_keeps_the_native_stride8_map():
    """B24's patch 8: the stride-8 level is the token map itself (not pooled to 16 and rebuilt by a deconv), strides
    16/32 are its max-pools and stride 4 one x2 deconv of it, at an odd non-square size."""
    model = build_tiny(arch=dict(TINY, depth=2, patch_size=8), pretrain_img_size=32).eval()
    captured = []  # the final norm's output: the (B, gh, gw, D) token map
    model.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 75, 101))
    native = captured[0].permute(0, 3, 1, 2)  # (1, 32, 10, 13): ceil(75 / 8) x ceil(101 / 8)
    assert [tuple(o.shape[-2:]) for o in outs] == [(19, 26), (10, 13), (5, 7), (3, 4)]  # ceil(size / stride)
    assert torch.equal(outs[1], native)
    assert torch.equal(outs[2], F.max_pool2d(native, 2, ceil_mode=True))
    assert torch.equal(outs[3], F.max_pool2d(native, 4, ceil_mode=True))
    assert [n for n, _ in model.pyramid.named_parameters()] == ['up2.weight', 'up2.bias']  # stride 4 only


def test_detection_sizes_and_empty_batch():
    model = build_tiny()
    assert_pyramid(model, LARGE_SIZES)
    outs = model.eval()(torch.randn(0, 3, 97, 131))
    assert tuple(tuple(o.shape) for o in outs) == tuple((0, ) + s for s in pyramid_shapes(model, 97, 131))


def test_official_variants():
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        _check_official_variants()


def _check_official_variants():
    for arch, params in (('12', 15350872), ('24', 30020680)):  # timm's param_count, with the 1000-class head
        model = ResMLP(arch=arch)
        assert model.out_channels == (96, 192, 384, 384) and model.pretrain_grid == (14, 14)
        assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith('pyramid.')) == \
            params - (384 * 1000 + 1000)
    b24 = ResMLP(arch='b24')  # patch 8: a 28x28 grid, 784x784 token layers
    assert b24.out_channels == (384, 768, 768, 768) and b24.pretrain_grid == (28, 28)
    assert b24.blocks[0].linear_tokens.weight.shape == (784, 784)


@pytest.mark.parametrize('out_indices,patch_size', [((3, ), 16), ((0, 2), 16), ((0, 3), 8), ((1, 2), 8)])
def test_out_indices_subsets(out_indices, patch_size):
    model = build_tiny(arch=dict(TINY, patch_size=patch_size), pretrain_img_size=4 * patch_size,
                       out_indices=out_indices)
    model.train()
    sum(o.mean() for o in model(torch.randn(1, 3, 64, 96))).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='ResMLP', arch=TINY, pretrain_img_size=64))


# ------------------------------------------------------------------------------------------------------------ parity
def test_parity_fixture(fixture):
    assert_parity(fixture, skipped=('logits', ))


def test_real_fixture_weights_any_size(fixture, official):
    from mmvit_backbones.testing.parity import parity_adapter
    model = parity_adapter(fixture).build()
    load_pretrained(model, official)
    with torch.no_grad():
        for mode in ('window', 'resample'):
            for block in model.blocks:
                block.token_mixing = mode
            outs = model.eval()(torch.randn(1, 3, 200, 330))
            assert all(torch.isfinite(o).all() for o in outs)
            assert tuple(tuple(o.shape[1:]) for o in outs) == pyramid_shapes(model, 200, 330)


# ------------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official2, tmp_path):
    assert_checkpoint_forms(build_s2, official2, str(tmp_path))


def test_timm_layout_and_heads(official2):
    ours = ResMLP.convert_checkpoint(official2)
    assert ResMLP.convert_checkpoint(ours).keys() == ours.keys()  # idempotent
    assert torch.equal(ours['blocks.1.linear_tokens.weight'], official2['blocks.1.attn.weight'])
    assert torch.equal(ours['blocks.0.ls2'], official2['blocks.0.gamma_2'])
    # timm's resmlp_12_224: renamed keys, (1, 1, D) affine parameters, a head
    timm = {}
    for key, value in ours.items():
        if key.endswith(('.alpha', '.beta')):
            value = value.reshape(1, 1, -1)
        timm[key] = value
    timm['head.weight'], timm['head.bias'] = torch.zeros(1000, 384), torch.zeros(1000)
    official_with_head = dict(official2, **{'head.weight': torch.zeros(1000, 384), 'head.bias': torch.zeros(1000)})
    a, b = build_s2(), build_s2()
    for model, state in ((a, timm), (b, official_with_head)):
        report = load_pretrained(model, state)
        assert not report.missing and not report.unexpected
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_checkpoint_of_another_grid_is_refused_with_the_fix(official2):
    big = dict(official2)
    for i in range(2):  # a 384-finetuned layout: 24x24 tokens
        big[f'blocks.{i}.attn.weight'] = torch.zeros(576, 576)
        big[f'blocks.{i}.attn.bias'] = torch.zeros(576)
    with pytest.raises(CheckpointError, match=r'24x24 tokens, i.e. pretrain_img_size=384'):
        load_pretrained(build_s2(), big)
    assert not load_pretrained(build_s2(pretrain_img_size=384), big).missing


def test_missing_and_foreign_checkpoints():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)


# ---------------------------------------------------------------------------------------------------------- training
def test_same_token_count_non_square_is_not_the_square_layout():
    """112x448 = 7x28 patches = 196 tokens: windows are spatial, not the 14x14 reshape of the token list."""
    model = ResMLP(arch=dict(TINY, depth=1), pretrain_img_size=224, final_norm=False, out_indices=(2, )).eval()
    x = torch.randn(1, 3, 112, 448)
    y = x.clone()
    y[..., 14 * 16:] += 1.0
    with torch.no_grad():
        delta = (model(x)[0] - model(y)[0]).abs().sum(1)[0]
    assert delta[:, :14].max() == 0 and delta[:, 14:].min() > 0


@pytest.mark.parametrize('frozen_stages', [0, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)


@pytest.mark.parametrize('mode', ['window', 'resample'])
def test_with_cp_equivalent(mode):
    assert_with_cp_equivalent(clone_build(build_tiny, drop_path_rate=0.1, token_mixing=mode))


def test_constant_drop_path():
    model = build_tiny(drop_path_rate=0.2)
    assert {block.drop_path.drop_prob for block in model.blocks} == {0.2}


def test_bad_inputs():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, patch_size=4)), dict(arch=dict(TINY, embed_dims=30)), dict(arch=dict(depth=2)),
        dict(token_mixing='global'), dict(drop_path_rate=1.0)])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.get_layer_depth('backbone.blocks.0.ls1', prefix='backbone.') == (1, 6)
    assert model.get_layer_depth('backbone.pyramid.up2.weight', prefix='backbone.') == (5, 6)

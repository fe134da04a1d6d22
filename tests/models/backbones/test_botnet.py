"""BoTNet backbone: pyramid contract, relative-position MHSA at any size, timm and ResNet-50 checkpoints, parity."""
import math

import pytest
import torch

import mmvit_backbones.models.backbones.botnet as botnet
from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
from mmvit_backbones.models import BoTNet
from mmvit_backbones.models.layers import resize_1d_table
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

FIXTURE = 'botnet26t_256.pt'
# Tiny custom variants with every piece of the design: BoT blocks at stride 16 (second block of stage 3) and a
# strided BoT block opening stage 4 (attention at stride 16, then the 2x2 pool), grouped 3x3 convs + ECA, no stem
# pool (tiered stem); and a 7x7-stem ResNet layout with SE, the paper's scaled position logits and 3 BoT blocks.
TINY = dict(stem_channels=(8, 16), stem_pool=False, depths=(1, 1, 2, 1), channels=(16, 32, 48, 64),
            attn_blocks=((), (), (1, ), (0, )), num_heads=2, group_width=4, channel_attn='eca', img_size=64)
TINY50 = dict(stem_channels=(16, ), depths=(1, 1, 1, 3), channels=(16, 32, 48, 64), attn_blocks=((), (), (), (0, 1, 2)),
              num_heads=2, channel_attn='se', scale_pos_embed=True, act='silu', img_size=96, new_attention=True)
build_tiny = clone_build(BoTNet, arch=TINY, drop_path_rate=0.1, zero_init_residual=False)
build_tiny50 = clone_build(BoTNet, arch=TINY50, zero_init_residual=False)
build_26t = clone_build(BoTNet, arch='26t')


def _mhsa_modules(model):
    return [m for m in model.modules() if isinstance(m, botnet.RelPosSelfAttention)]


# ------------------------------------------------------------------------------------------------------ shapes
def test_pyramid_at_odd_and_large_sizes():
    assert_pyramid(build_tiny(), ODD_SIZES + LARGE_SIZES)
    assert_pyramid(build_tiny50(), ODD_SIZES)
    assert_pyramid(build_tiny(out_indices=(3, 1)), ((97, 61), ), batch=2)
    assert_pyramid(build_tiny(out_indices=(1, )), ((70, 45), ))


def test_official_variants_build():
    """Parameter counts: timm's (which include the classifier; sebotnet33ts also its 1280-channel final conv) and
    for BoT50 the ResNet-50 arithmetic: 3 c5 3x3 convs (+BN) out, 3 qkv projections + tables + BN in."""
    timm_counts = {'26t': (12.49, 2048 * 1000 + 1000),
                   'eca26ts': (10.59, 2048 * 1000 + 1000),
                   'se33ts': (13.70, 1536 * 1280 + 2 * 1280 + 1280 * 1000 + 1000)}
    for arch, (params, head) in timm_counts.items():
        with torch.device('meta'):
            model = BoTNet(arch=arch)
        total = sum(p.numel() for p in model.parameters()) + head
        assert abs(total / 1e6 - params) < 0.01, (arch, total)
    with torch.device('meta'):
        model = BoTNet(arch='50')
    resnet50_backbone = 23_508_032  # torchvision resnet50 without fc
    mhsa = 3 * 512 * 1536 + 2 * 128 * (127 + 63 + 63) + 3 * 2 * 512  # qkv, tables at 1024 (64 / 32 / 32), BN
    assert sum(p.numel() for p in model.parameters()) == resnet50_backbone - 3 * (512 * 512 * 9 + 2 * 512) + mhsa
    assert model.out_channels == (256, 512, 1024, 2048) and model.num_layers == 16
    assert [m.height_rel.shape[0] for m in _mhsa_modules(model)] == [127, 63, 63]
    assert BoTNet.resolve_arch('botnet26t_256') == BoTNet.resolve_arch('26t')
    with torch.device('meta'):
        assert BoTNet(arch='se33ts').out_channels == (256, 512, 1024, 1536)


def test_relative_logits_follow_the_definition():
    """bias[(y, x), (y', x')] = q(y, x) . (height_rel[y' - y + H - 1] + width_rel[x' - x + W - 1]), non-square."""
    mhsa = botnet.RelPosSelfAttention(8, 2, None, (3, 5))
    h, w = 3, 5
    q = torch.randn(2, 2, h * w, 4)
    got = mhsa.relative_logits(q, (h, w))
    expected = torch.empty(2, 2, h * w, h * w)
    for y in range(h):
        for x in range(w):
            for yk in range(h):
                for xk in range(w):
                    rel = mhsa.height_rel[yk - y + h - 1] + mhsa.width_rel[xk - x + w - 1]
                    expected[:, :, y * w + x, yk * w + xk] = q[:, :, y * w + x] @ rel
    torch.testing.assert_close(got, expected)


def test_mhsa_matches_timm_bottleneck_attention_on_non_square_maps():
    """Cross-check with timm's BottleneckAttn (the reference of the fixture) at its fixed, non-square size."""
    bottleneck_attn = pytest.importorskip('timm.layers.bottleneck_attn')
    for stride, scale_pos_embed, dim_head in ((1, False, None), (2, True, None), (1, False, 8)):
        ref = bottleneck_attn.BottleneckAttn(32, feat_size=(6, 10), stride=stride, num_heads=4, dim_head=dim_head,
                                             scale_pos_embed=scale_pos_embed).eval()
        ours = botnet.RelPosSelfAttention(32, 4, dim_head, (6, 10), stride, scale_pos_embed).eval()
        ours.load_state_dict({'qkv.weight': ref.qkv.weight, 'height_rel': ref.pos_embed.height_rel,
                              'width_rel': ref.pos_embed.width_rel})
        x = torch.randn(2, 32, 6, 10)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_all_attention_goes_through_shared_core(monkeypatch):
    calls = spy_calls(monkeypatch, 'attention', botnet, record=lambda *args, **kwargs: kwargs['bias'].shape)
    assert_naive_attention_matches(build_tiny().eval(), torch.randn(1, 3, 64, 96))
    assert calls == [(1, 2, 24, 24)] * 4  # both BoT blocks attend at stride 16 (4x6)


# -------------------------------------------------------------------------------------------------- registries
def test_builds_from_mmdet_and_mmseg_registries():
    assert_builds_from_both_registries(dict(type='BoTNet', arch=TINY))


# ------------------------------------------------------------------------------------------------------ parity
def test_parity_with_official_fixture(fixture):
    model = assert_parity(fixture, ok=('stem', 'stage0', 'stage1', 'stage2', 'stage3'))
    assert model.pretrain_img_size == (256, 256)


_TO_TIMM = (('.conv1.', '.conv1_1x1.'), ('.conv2.', '.conv2_kxk.'), ('.conv3.', '.conv3_1x1.'),
            ('.mhsa.qkv', '.self_attn.qkv'), ('.mhsa.', '.self_attn.pos_embed.'), ('.mhsa_norm.', '.post_attn.'),
            ('.channel_attn.', '.attn.'))


def _timm_layout(model: BoTNet):
    """timm key names, shapes and integer buffers of a model of ours (inverse of the converter, plus the head)."""
    keys, int_buffers = [], {}
    for key, value in model.state_dict().items():
        if key.startswith('stages.'):
            for ours, theirs in _TO_TIMM:
                key = key.replace(ours, theirs)
        keys.append([key, list(value.shape), str(value.dtype)])
        if not value.is_floating_point():
            int_buffers[key] = torch.zeros((), dtype=value.dtype, device='cpu')
    dim = model.out_channels[-1]
    keys += [['head.fc.weight', [1000, dim], 'torch.float32'], ['head.fc.bias', [1000], 'torch.float32']]
    return keys, int_buffers


BOTNET50TS = dict(stem_channels=(24, 32, 64), depths=(3, 4, 6, 3), channels=(256, 512, 1024, 2048),
                  attn_blocks=((), (3, ), (1, 3, 5), (1, )), act='silu')


@pytest.mark.parametrize('variant,arch,size', [
    ('botnet26t_256', '26t', (224, 320)),
    ('sebotnet33ts_256', 'se33ts', (256, 256)),
    ('eca_botnext26ts_256', 'eca26ts', (192, 256)),
    ('botnet50ts_256', BOTNET50TS, (256, 192)),
])
def test_parity_adapter_infers_variant_and_size(fixture, variant, arch, size):
    """Other timm BoTNet variants at other, non-square sizes (timm builds them with img_size = input size): the
    layout, activation, gates and reference size are recognised and every converted tensor has its counterpart
    with the same shape (loads without resizing). The timm family itself was checked against timm 1.0.31 outputs
    (fixtures of this format for all four variants at non-square sizes) when this backbone was written."""
    with torch.device('meta'):
        reference = BoTNet(arch=arch, pretrain_img_size=size)
    keys, int_buffers = _timm_layout(reference)
    fake = dict(fixture, variant=variant, keys=keys, int_buffers=int_buffers, input_hw=list(size))
    adapter = parity_adapter(fake)
    with torch.device('meta'):
        model = adapter.build()
    assert model.pretrain_img_size == size
    names = ('stem_channels', 'stem_pool', 'depths', 'channels', 'attn_blocks', 'group_width', 'channel_attn',
             'num_heads', 'dim_head', 'act', 'scale_pos_embed')
    assert {k: model.arch_settings[k] for k in names} == {k: reference.arch_settings[k] for k in names}
    converted = BoTNet.convert_checkpoint({k: torch.empty(s, device='meta') for k, s, _ in keys})
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_parity_adapter_outputs_on_a_non_square_fixture_layout(fixture):
    """A 26t fixture made at 224x320: all weights load, the outputs have the official names and geometry."""
    with torch.device('meta'):
        keys, int_buffers = _timm_layout(BoTNet(arch='26t', pretrain_img_size=(224, 320)))
    fake = dict(fixture, keys=keys, int_buffers=int_buffers, input_hw=[224, 320])
    adapter = parity_adapter(fake)
    model = adapter.build()
    report = load_pretrained(model, official_state_dict(fake))
    assert not report.missing and not report.unexpected and len(report.loaded) == len(keys) - 2
    with torch.no_grad():
        outs = adapter.outputs(model.eval(), fixture_input(fake))
    assert {k: tuple(v.shape) for k, v in outs.items()} == {
        'stem': (1, 64, 56, 80), 'stage0': (1, 256, 56, 80), 'stage1': (1, 512, 28, 40),
        'stage2': (1, 1024, 14, 20), 'stage3': (1, 2048, 7, 10)}


def test_fixture_weights_run_at_other_sizes(official):
    model = build_26t()
    load_pretrained(model, official)
    model.eval()
    with torch.no_grad():
        for h, w in ((224, 320), (97, 130)):  # tables interpolated at run time (31 -> 27/39, 13/17 rows)
            outs = model(torch.randn(1, 3, h, w))
            assert [tuple(o.shape[2:]) for o in outs] == [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]
            assert all(torch.isfinite(o).all() for o in outs)


# ------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_forms(official, tmp_path):
    assert_checkpoint_forms(build_26t, official, str(tmp_path))


def test_converter_drops_classifier_and_is_idempotent(official):
    converted = BoTNet.convert_checkpoint(official)
    assert not any(k.startswith('head.') for k in converted)
    assert {'stages.2.1.mhsa.height_rel', 'stages.3.0.mhsa.qkv.weight', 'stages.3.1.mhsa_norm.running_var',
            'stages.0.0.conv2.conv.weight', 'stages.1.0.shortcut.bn.bias'} <= set(converted)
    assert BoTNet.convert_checkpoint(converted).keys() == converted.keys()
    report = load_pretrained(build_26t(), official)
    assert not report.missing and not report.unexpected
    assert len(report.loaded) == len(official) - 2  # everything but head.fc.{weight,bias}


def _torchvision_resnet50_state():
    torchvision = pytest.importorskip('torchvision')
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    for key, value in state.items():  # non-trivial BN statistics, so that a mix-up would show
        if key.endswith(('running_mean', 'running_var')):
            value.copy_(torch.rand_like(value) + 0.5)
    return state


def test_bot50_initialises_from_a_torchvision_resnet50(tmp_path):
    """The ``torchvision://resnet50`` route with a locally generated torchvision-layout checkpoint (random weights):
    everything but c5's MHSA loads; the MHSA is reported as new, the replaced c5 3x3 convs as unexpected."""
    state = _torchvision_resnet50_state()
    model = BoTNet(arch='50')
    report = load_pretrained(model, state)
    assert not report.missing
    replaced = {f'stages.3.{j}.conv2.{part}' for j in range(3) for part in (
        'conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked')}
    assert set(report.unexpected) == replaced
    ours = model.state_dict()
    converted = BoTNet.convert_checkpoint(state)
    assert len(report.loaded) == len(converted) - len(replaced) == len(state) - 2 - len(replaced)
    for key in report.loaded:
        assert torch.equal(ours[key], converted[key]), key
    torch.testing.assert_close(ours['stem.conv1.conv.weight'], state['conv1.weight'], rtol=0, atol=0)
    torch.testing.assert_close(ours['stages.3.0.shortcut.bn.running_var'], state['layer4.0.downsample.1.running_var'])
    torch.testing.assert_close(ours['stages.3.2.conv3.conv.weight'], state['layer4.2.conv3.weight'])
    new = [k for k in ours if k.startswith(model.new_param_prefixes)]
    assert len(new) == 3 * (3 + 5)  # qkv, height_rel, width_rel + the BN after the MHSA, per BoT block
    # the same through init_cfg, from an mmdet detector checkpoint (backbone. prefix + other modules)
    path = str(tmp_path / 'mask_rcnn_r50.pth')
    torch.save({'meta': {}, 'state_dict': {**{f'backbone.{k}': v for k, v in state.items()},
                                          'neck.lateral_convs.0.conv.weight': torch.zeros(256, 256, 1, 1)}}, path)
    from_cfg = BoTNet(arch='50', init_cfg=dict(type='Pretrained', checkpoint=path))
    from_cfg.init_weights()
    for key in report.loaded:
        assert torch.equal(from_cfg.state_dict()[key], ours[key]), key


def test_missing_and_foreign_checkpoints(official):
    assert_missing_checkpoint_error(build_tiny)
    model = build_tiny(init_cfg=dict(type='Pretrained', checkpoint='/nonexistent/botnet.pth'))
    with pytest.raises(FileNotFoundError, match='botnet26t_c1_256-167a0e9f'):
        model.init_weights()
    foreign = {f'layer{i}.conv.weight': torch.zeros(8, 8, 3, 3) for i in range(20)}
    with pytest.raises(CheckpointError, match='does not look like'):
        load_pretrained(build_tiny(), foreign)
    with pytest.raises(CheckpointError, match='does not look like'):  # a ViT is not a ResNet, even for BoT50
        load_pretrained(BoTNet(arch='50'), {f'blocks.{i}.attn.qkv.weight': torch.zeros(3, 3) for i in range(60)})
    with pytest.raises(CheckpointError, match='another variant'):
        load_pretrained(BoTNet(arch='se33ts'), official)


def test_checkpoint_of_another_resolution_is_resized_on_load(official):
    """26t tables made at 256 load into a model laid out for 192x320 (interpolated by the load pre-hook). The
    load-time resize is the run-time one, so a model stored at one size runs an image of another exactly as the
    model stored at the image's size does."""
    model = build_26t(pretrain_img_size=(192, 320))
    report = load_pretrained(model, official)
    assert not report.missing and not report.unexpected
    for (i, j), stride in (((2, 1), 16), ((3, 0), 16), ((3, 1), 32)):
        mhsa = model.stages[i][j].mhsa
        for name, size in (('height_rel', 192), ('width_rel', 320)):
            table = official[f'stages.{i}.{j}.self_attn.pos_embed.{name}']
            torch.testing.assert_close(getattr(mhsa, name).data, resize_1d_table(table, 2 * size // stride - 1))
    small = build_tiny(pretrain_img_size=64)  # tiny models for the forward comparison (speed)
    stored_at_96x160 = build_tiny(pretrain_img_size=(96, 160))
    report = load_pretrained(stored_at_96x160, small.state_dict())
    assert not report.missing and not report.unexpected
    assert stored_at_96x160.stages[2][1].mhsa.width_rel.shape[0] == 19
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        for a, b in zip(stored_at_96x160.eval()(x), small.eval()(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------- resizing cache
def test_run_time_tables_resized_once_per_block_and_cached(monkeypatch):
    calls = []
    original = botnet.resize_1d_table

    def counting(table, length, *args, **kwargs):
        calls.append(length)
        return original(table, length, *args, **kwargs)

    monkeypatch.setattr(botnet, 'resize_1d_table', counting)
    model = build_tiny()
    model.train()
    outs = model(torch.randn(2, 3, 96, 128))  # training: recomputed every forward, one table per axis and block
    assert sorted(calls) == [11, 11, 15, 15]  # both BoT blocks attend at stride 16 (6x8)
    sum(o.mean() for o in outs).backward()
    assert all(m.height_rel.grad is not None and m.width_rel.grad is not None for m in _mhsa_modules(model))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
        model(torch.randn(2, 3, 96, 128))  # same size: cached
        assert len(calls) == 8
        model(torch.randn(1, 3, 64, 128))  # new height, same width: only the height tables
        assert len(calls) == 10 and sorted(calls[-2:]) == [7, 7]
        model.load_state_dict(model.state_dict())  # in-place update invalidates the cache
        model(torch.randn(1, 3, 64, 128))
        assert len(calls) == 14


def test_tables_at_the_reference_size_are_used_unchanged():
    model = build_tiny().eval()
    mhsa = model.stages[2][1].mhsa  # reference size 64 -> 4x4 at stride 16
    assert mhsa.feat_size == (4, 4)
    table = mhsa._absolute_table(mhsa.height_rel, 4)
    assert torch.equal(table[0, 3], mhsa.height_rel[6]) and torch.equal(table[3, 0], mhsa.height_rel[0])


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3])  # 4 (everything) in test_detection_defaults_frozen_bn
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)
    model = build_tiny(frozen_stages=frozen_stages)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    for i, stage in enumerate(model.stages):
        assert all(p.requires_grad == (i >= frozen_stages) for p in stage.parameters())


@pytest.mark.parametrize('build', [build_tiny, build_tiny50])
def test_detection_defaults_frozen_bn(build):
    """The configs' setting (mmdet ResNet): BN without gradients, in eval mode, stem + stage 1 frozen. Only the BN
    after a *new* MHSA (BoT50-like archs, nothing pretrained to keep) learns; frozen stages stay frozen."""
    model = build(norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, frozen_stages=1)
    model.train()
    new = [b.mhsa_norm for stage in model.stages for b in stage if isinstance(b, botnet.BoTBlock)]
    new = new if model.new_param_prefixes else []
    pretrained = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and all(m is not n for n in new)]
    assert pretrained and not any(m.training or m.weight.requires_grad for m in pretrained)
    assert all(m.training and m.weight.requires_grad for m in new) and len(new) == (3 if build is build_tiny50 else 0)
    trainable = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'stages.1', 'stages.2', 'stages.3'}
    outs = model(torch.randn(1, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    frozen_all = build(norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, frozen_stages=4)
    frozen_all.train()
    assert not any(p.requires_grad for p in frozen_all.parameters())
    assert not any(m.training for m in frozen_all.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_norm_eval():
    assert_norm_eval(build_tiny)


def test_with_cp_is_equivalent():
    assert_with_cp_equivalent(build_tiny)
    assert_with_cp_equivalent(build_tiny50, size=(70, 45))


def test_bad_inputs_rejected():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(TINY, depths=(1, 1, 1))),
        dict(arch=dict(TINY, attn_blocks=((), (), (2, ), (0, )))),
        dict(arch=dict(TINY, num_heads=3)),
        dict(arch=dict(TINY, act='tanh')),
        dict(arch=dict(TINY, channel_attn='cbam')),
        dict(arch=dict(TINY, stem_channels=())),
        dict(arch={k: v for k, v in TINY.items() if k != 'attn_blocks'}),
        dict(pretrain_img_size=(64, 64, 3)),
        dict(drop_path_rate=1.5),
    ])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.num_layers == 5
    depth = lambda name: model.get_layer_depth(name)[0]  # noqa: E731
    assert depth('stem.conv1.conv.weight') == 0
    assert depth('stages.0.0.conv1.conv.weight') == 1
    assert depth('stages.2.1.mhsa.height_rel') == depth('stages.2.1.mhsa_norm.bias') == 4
    assert depth('stages.3.0.shortcut.bn.weight') == 5
    assert model.get_layer_depth('backbone.stages.2.0.conv1.conv.weight', prefix='backbone.') == (3, 7)

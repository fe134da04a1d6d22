"""The mmvit_* timm models: registration from the backbone tables, features at any size, the official classifier
heads (against the official logits of the parity fixtures), pretrained loading, no OpenMMLab import."""
import glob
import math
import os.path as osp
import subprocess
import sys

import pytest
import timm
import torch

import mmvit_backbones  # noqa: F401  (registers the mmvit_* models)
from mmvit_backbones.checkpoint import CheckpointError
from mmvit_backbones.interop import FAMILIES, VARIANTS
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES
from mmvit_backbones.testing.parity import fixture_input, official_state_dict, tolerance

PARITY_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'parity')
# DINO ViT-S/16: named after its weights once the table lists them, after the arch before
DINO_S16 = 'mmvit_vit_s16' if 'mmvit_vit_s16' in timm.list_models('mmvit_vit_*') else 'mmvit_vit_s'
# the registered model of each fixture's official variant
FIXTURE_MODELS = {
    'botnet26t_256': 'mmvit_botnet_26t', 'cswin_tiny_224': 'mmvit_cswin_t', 'deepvit_16b_224': 'mmvit_deepvit_16b',
    'dino_vits16_224': DINO_S16, 'gcvit_xxtiny_224': 'mmvit_gcvit_xxt', 'mixer_b32_224': 'mmvit_mixer_b32',
    'pyramidtnt_ti_192': 'mmvit_pyramidtnt_ti', 'resmlp_12_224': 'mmvit_resmlp_12',
    'shunted_t_224': 'mmvit_shunted_t', 't2t_vit_14_224': 'mmvit_t2t_vit_14', 'tnt_s_224': 'mmvit_tnt_s'}


def small(family) -> dict:
    """Arguments that make a family's model small enough for a CPU test (the demo's small backbone)."""
    return dict(SMALL_BACKBONES[family.backbone.__name__])


def smallest_name(family) -> str:
    return next(v.name for v in VARIANTS if v.family is family)


def test_every_family_and_variant_is_registered():
    names = timm.list_models('mmvit_*')
    assert sorted(names) == sorted(v.name for v in VARIANTS)
    assert {n.split('_')[1] for n in names} >= {'pyramidtnt', 'gcvit', 'shunted', 't2t', 'vit', 'botnet', 'cswin',
                                                'tnt', 'deepvit', 'mixer', 'resmlp'}
    for family in FAMILIES:
        tables = getattr(family.backbone, 'official_weights', {}) or {}
        for key in tables:  # every published checkpoint has its name
            assert f'mmvit_{family.token}_{key.replace("-", "_").lower()}' in names
        covered = {w.arch for w in tables.values()} | {v.arch for v in VARIANTS if v.family is family}
        # every variant of the table is reachable (named after its weights or after itself)
        assert all(family.backbone.resolve_arch(a) in [family.backbone.resolve_arch(c) for c in covered]
                   for a in family.backbone.arch_zoo)
    assert 'mmvit_cswin_t' in names


def test_pretrained_cfg_comes_from_the_official_weights_table():
    checked = 0
    for v in VARIANTS:
        cfg = timm.get_pretrained_cfg(v.name).to_dict()
        assert cfg['first_conv'] and cfg['classifier'] == 'head.fc'
        if v.weights is None:
            continue
        w = v.weights
        assert cfg['input_size'] == (3, w.input_size, w.input_size)
        assert tuple(cfg['mean']) == tuple(w.mean) and tuple(cfg['std']) == tuple(w.std)
        assert cfg['license'] == w.license
        assert cfg['url'] in ('', w.url) and (cfg.get('origin_url') or '') == w.url
        checked += 1
    if not checked:
        pytest.skip('the backbone classes carry no official_weights table yet')


def test_unknown_name_is_timms_unknown_model_and_ours_are_listed():
    with pytest.raises(RuntimeError, match=r'Unknown model \(mmvit_cswin_xl\)'):
        timm.create_model('mmvit_cswin_xl')
    assert 'mmvit_cswin_t' in timm.list_models('mmvit_*')


def test_timm_route_imports_no_openmmlab_package():
    code = ('import sys, mmvit_backbones, timm; timm.create_model("mmvit_cswin_t", features_only=True); '
            'print(sorted(m for m in ("mmcv", "mmdet", "mmseg") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                            cwd=osp.dirname(osp.dirname(osp.dirname(__file__))))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == '[]'


# one model per distinct network (the weights of one variant, e.g. ResMLP-12's supervised/distilled/DINO, share it)
NETWORKS = {(v.family.token, v.arch, tuple(sorted(v.kwargs.items()))): v.name for v in VARIANTS}


@pytest.mark.parametrize('name', sorted(NETWORKS.values()))
def test_feature_info_of_every_variant(name):
    """On the meta device (no memory, no compute): the levels, channels and strides a user gets."""
    with torch.device('meta'):
        model = timm.create_model(name, features_only=True, device='meta')
    backbone = model.model.backbone if hasattr(model, 'model') else model.backbone
    assert model.feature_info.channels() == list(backbone.out_channels)
    assert model.feature_info.reduction() == [4, 8, 16, 32]


@pytest.mark.parametrize('family', FAMILIES, ids=[f.token for f in FAMILIES])
def test_features_at_any_size(family):
    model = timm.create_model(smallest_name(family), features_only=True, out_indices=(-3, -1), **small(family))
    assert model.feature_info.reduction() == [8, 32]
    h, w = 61, 83
    with torch.no_grad():
        maps = model.eval()(torch.randn(1, 3, h, w))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (c, math.ceil(h / r), math.ceil(w / r))
        for c, r in zip(model.feature_info.channels(), model.feature_info.reduction())]


@pytest.mark.parametrize('family', FAMILIES, ids=[f.token for f in FAMILIES])
def test_classifier_trains_and_resets(family):
    model = timm.create_model(smallest_name(family), num_classes=5, **small(family)).train()
    logits = model(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, 5)
    logits.logsumexp(1).mean().backward()
    # timm's backward test: every trained parameter gets a gradient (T2T-ViT's sinusoid table is fixed, officially)
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    model.reset_classifier(0)
    assert model.eval()(torch.randn(1, 3, 48, 48)).shape == (1, model.num_features)


@pytest.mark.parametrize('fixture_name', sorted(FIXTURE_MODELS))
def test_head_reproduces_the_official_logits(fixture_name):
    """The official-layout weights of a parity fixture, loaded as a timm user loads an official checkpoint, give
    the official classifier's logits (DINO has no classifier: its pre-logits are the official class token)."""
    fixture = torch.load(osp.join(PARITY_DIR, fixture_name + '.pt'), weights_only=True)
    model = timm.create_model(FIXTURE_MODELS[fixture_name], pretrained=True,
                              pretrained_cfg_overlay=dict(state_dict=official_state_dict(fixture))).eval()
    with torch.no_grad():
        x = fixture_input(fixture)
        if 'logits' in fixture['outputs']:
            ours, reference = model(x), fixture['outputs']['logits']
        else:
            ours, reference = model.forward_head(model.forward_features(x), pre_logits=True), fixture['outputs']['cls']
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max().item() <= tolerance(reference)


def test_every_fixture_with_logits_is_checked():
    names = {osp.basename(p)[:-3] for p in glob.glob(osp.join(PARITY_DIR, '*.pt'))}
    with_logits = {n for n in names
                   if 'logits' in torch.load(osp.join(PARITY_DIR, n + '.pt'), weights_only=True)['outputs']}
    assert with_logits <= set(FIXTURE_MODELS)


def test_pretrained_file_official_own_layout_and_another_family(tmp_path):
    fixture = torch.load(osp.join(PARITY_DIR, 'cswin_tiny_224.pt'), weights_only=True)
    official = tmp_path / 'cswin_tiny_224.pth'
    torch.save({'state_dict_ema': official_state_dict(fixture)}, official)  # as the official training script saves
    features = timm.create_model('mmvit_cswin_t', features_only=True, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(official)))
    stem = features.model.backbone.stem.conv.weight
    assert torch.equal(stem, official_state_dict(fixture)['stage1_conv_embed.0.weight'])

    # a file saved from the model itself loads as it is (with timm's rule: another num_classes drops the head)
    model = timm.create_model('mmvit_cswin_t', arch=SMALL_BACKBONES['CSWin']['arch'])
    own = tmp_path / 'own.pth'
    torch.save(model.state_dict(), own)
    again = timm.create_model('mmvit_cswin_t', arch=SMALL_BACKBONES['CSWin']['arch'], pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(own)))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    other = torch.load(osp.join(PARITY_DIR, 'gcvit_xxtiny_224.pt'), weights_only=True)
    wrong = tmp_path / 'gcvit.pth'
    torch.save(official_state_dict(other), wrong)
    with pytest.raises(CheckpointError, match='does not look like a CSWin checkpoint'):
        timm.create_model('mmvit_cswin_t', arch=SMALL_BACKBONES['CSWin']['arch'], pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(wrong)))

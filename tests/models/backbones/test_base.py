"""Behaviour every backbone shares (base class), checked on each registered backbone's small variant."""
import pytest
import torch

import mmvit_backbones
from mmvit_backbones.models.backbones.base import PyramidBackbone
from mmvit_backbones.testing.contract import pyramid_shapes
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES


def test_every_backbone_has_a_small_variant():
    backbones = {name for name in mmvit_backbones.__all__
                 if isinstance(getattr(mmvit_backbones, name), type)
                 and issubclass(getattr(mmvit_backbones, name), PyramidBackbone)
                 and getattr(mmvit_backbones, name) is not PyramidBackbone}
    assert backbones == set(SMALL_BACKBONES)


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
def test_empty_batch_gives_empty_maps(name):
    """A batch of 0 images (e.g. an empty shard of a distributed sampler) returns empty maps of the right shape."""
    model = getattr(mmvit_backbones, name)(**SMALL_BACKBONES[name]).eval()
    with torch.no_grad():
        outs = model(torch.randn(0, 3, 75, 101))
    assert tuple(tuple(o.shape) for o in outs) == tuple((0, ) + s for s in pyramid_shapes(model, 75, 101))


BACKBONES = sorted(SMALL_BACKBONES)


@pytest.mark.parametrize('name', BACKBONES)
def test_variant_table(name):
    """One idiom in every family: canonical names in ``arch_zoo``, other names in ``arch_aliases``, every setting
    a known key, every official checkpoint of a variant the family has, and the hint a user sees names each file."""
    cls = getattr(mmvit_backbones, name)
    known = set(cls.essential_keys) | set(cls.arch_defaults)
    for variant, settings in cls.arch_zoo.items():
        assert variant == variant.lower() and set(cls.essential_keys) <= set(settings) <= known, variant
    assert set(cls.arch_aliases.values()) <= set(cls.arch_zoo) and not set(cls.arch_aliases) & set(cls.arch_zoo)
    for alias, variant in cls.arch_aliases.items():
        assert cls.resolve_arch(alias) == cls.resolve_arch(variant)
    assert cls.official_weights, f'{name}: no official weights listed'
    for weights in cls.official_weights.values():
        assert weights.arch in cls.arch_zoo and weights.license
        assert (weights.url or 'not released') in cls.weights_hint


@pytest.mark.parametrize('name', BACKBONES)
def test_every_trainable_parameter_gets_a_gradient(name):
    """DistributedDataParallel with ``find_unused_parameters=False`` (mmengine's default) fails at the second
    iteration if a trainable parameter got no gradient: the four maps together must reach every one."""
    torch.manual_seed(0)
    model = getattr(mmvit_backbones, name)(**SMALL_BACKBONES[name]).train()
    outs = model(torch.randn(2, 3, 75, 101))
    sum(o.float().mean() for o in outs).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


@pytest.mark.parametrize('name', BACKBONES)
def test_custom_arch_dict_with_an_unknown_key_is_refused(name):
    cls = getattr(mmvit_backbones, name)
    settings = dict(next(iter(cls.arch_zoo.values())), mlp_raito=4.0)
    with pytest.raises(ValueError, match=r"unknown \['mlp_raito'\]") as error:
        cls.resolve_arch(settings)
    assert all(key in str(error.value) for key in cls.arch_defaults)  # the message lists what may be set


def test_numeric_variant_names_work_as_numbers():
    """``--cfg-options model.backbone.arch=14`` reaches the backbone as an int."""
    from mmvit_backbones.models import ResMLP, T2TViT
    assert T2TViT.resolve_arch(14) == T2TViT.resolve_arch('14')
    assert ResMLP.resolve_arch(12) == ResMLP.resolve_arch('12')
    with pytest.raises(ValueError, match='unknown arch'):
        T2TViT.resolve_arch(15)
    with pytest.raises(TypeError, match='variant name or a dict'):
        T2TViT.resolve_arch(True)


@pytest.mark.parametrize('name', BACKBONES)
def test_maps_are_contiguous_nchw(name):
    """mmcv's RoIAlign (every R-CNN) reads its input as contiguous NCHW whatever its strides; a FPN convolution keeps
    a channels-last input channels-last, so a channels-last or cropped view would give wrong RoI features."""
    model = getattr(mmvit_backbones, name)(**SMALL_BACKBONES[name]).eval()
    for size in ((64, 96), (75, 101)):  # whole windows, and padded then cropped
        with torch.no_grad():
            outs = model(torch.randn(1, 3, *size))
        assert all(o.is_contiguous() for o in outs), [o.stride() for o in outs]


def test_levels_are_cropped_to_the_level_strides():
    """The base class crops level i to ceil(size / level_strides[i]): PyramidTNT's native strides are 8..64."""
    from mmvit_backbones.models import PyramidTNT
    model = PyramidTNT(**dict(SMALL_BACKBONES['PyramidTNT'], native_strides=True)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 75, 101))
    assert [tuple(o.shape[-2:]) for o in outs] == [(-(-75 // s), -(-101 // s)) for s in (8, 16, 32, 64)]


def test_the_runtime_imports_no_test_support():
    """``mmvit_backbones.models`` (the runtime) never imports the parity harness, contract checks, CPU shrink
    configs or synthetic datasets."""
    import subprocess
    import sys
    code = ('import sys, mmvit_backbones.models; '
            'print(sorted(m for m in sys.modules if m.startswith("mmvit_backbones.testing")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'

"""Behaviour every backbone shares (base class), checked on each registered backbone's small variant."""
import pytest
import torch

import mmvit_backbones
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES
from mmvit_backbones.models.backbones.base import PyramidBackbone
from mmvit_backbones.testing.contract import pyramid_shapes


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

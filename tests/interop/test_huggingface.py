"""Hugging Face transformers: ``TimmBackbone`` with an ``mmvit_*`` name returns the pyramid, offline, and an UperNet
built on it trains (the backbone config route; ``from_pretrained(name)`` would ask the Hub first)."""
import torch
from transformers import AutoBackbone, TimmBackbone, TimmBackboneConfig, UperNetConfig, UperNetForSemanticSegmentation

import mmvit_backbones  # noqa: F401  (registers the mmvit_* models)
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES

SMALL_CSWIN = SMALL_BACKBONES['CSWin']['arch']


def test_timm_backbone_returns_the_maps():
    config = TimmBackboneConfig(backbone='mmvit_cswin_t', out_indices=[0, 1, 2, 3])
    backbone = TimmBackbone(config, arch=SMALL_CSWIN).eval()  # extra kwargs reach timm.create_model
    assert isinstance(AutoBackbone.from_config(TimmBackboneConfig(backbone='mmvit_vit_ti')), TimmBackbone)
    assert backbone.channels == [32, 64, 128, 256]
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 67, 101)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(1, 32, 17, 26), (1, 64, 9, 13), (1, 128, 5, 7), (1, 256, 3, 4)]
    last = TimmBackbone(TimmBackboneConfig(backbone='mmvit_cswin_t'), arch=SMALL_CSWIN)  # transformers' default
    assert last.channels == [256]


def test_upernet_on_the_backbone_trains():
    config = TimmBackboneConfig(backbone='mmvit_vit_ti', out_indices=[0, 1, 2, 3])  # the smallest registered model
    model = UperNetForSemanticSegmentation(UperNetConfig(
        backbone_config=config, num_labels=3, hidden_size=32, auxiliary_in_channels=192, auxiliary_channels=16))
    out = model(pixel_values=torch.randn(2, 3, 64, 96), labels=torch.randint(0, 3, (2, 64, 96)))
    assert out.logits.shape == (2, 3, 64, 96)
    out.loss.backward()
    assert model.backbone._backbone.model.backbone.patch_embed.proj.weight.grad is not None

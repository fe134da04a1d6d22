"""segmentation_models_pytorch encoders ``tu-mmvit_*`` (smp reaches them through timm): a Unet of every family trains
on synthetic masks at a size that is no multiple of 32; FPN trains and asks for multiples of 32 (smp's own check)."""
import pytest
import segmentation_models_pytorch as smp
import torch

import mmvit_backbones  # noqa: F401  (registers the mmvit_* models)
from mmvit_backbones.interop import FAMILIES, VARIANTS
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES


def encoder(family) -> str:
    return 'tu-' + next(v.name for v in VARIANTS if v.family is family)


def shapes_masks(batch: int, h: int, w: int, classes: int = 3):
    """Images of bright rectangles and their masks (class = which rectangle), the target a segmenter must learn."""
    g = torch.Generator().manual_seed(0)
    images = 0.1 * torch.randn(batch, 3, h, w, generator=g)
    masks = torch.zeros(batch, h, w, dtype=torch.long)
    for b in range(batch):
        for c in range(1, classes):
            y, x = int(torch.randint(0, h // 2, (1, ), generator=g)), int(torch.randint(0, w // 2, (1, ), generator=g))
            masks[b, y:y + h // 3, x:x + w // 3] = c
            images[b, c - 1, y:y + h // 3, x:x + w // 3] += 1.0
    return images, masks


def train_step(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> None:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    logits = model(images)
    assert logits.shape == (images.shape[0], 3, *images.shape[-2:])
    loss = torch.nn.functional.cross_entropy(logits, masks)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)


@pytest.mark.parametrize('family', FAMILIES, ids=[f.token for f in FAMILIES])
def test_unet_train_step(family):
    small = SMALL_BACKBONES[family.backbone.__name__]
    unet = smp.Unet(encoder(family), encoder_weights=None, classes=3, decoder_channels=(32, 16, 16, 8, 8), **small)
    assert unet.encoder.out_channels[2:] == list(unet.encoder.model.feature_info.channels())
    train_step(unet, *shapes_masks(2, 45, 71))  # any size: Unet does not require multiples of 32


def test_fpn_train_step_and_smps_size_constraint():
    fpn = smp.FPN('tu-mmvit_cswin_t', encoder_weights=None, classes=3, decoder_pyramid_channels=64,
                  decoder_segmentation_channels=32, arch=SMALL_BACKBONES['CSWin']['arch'])
    train_step(fpn, *shapes_masks(2, 64, 96))
    with pytest.raises(RuntimeError, match='divisible by 32'):
        fpn.eval()(torch.randn(1, 3, 65, 97))

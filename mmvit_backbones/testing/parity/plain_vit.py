"""Parity adapter of PlainViT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models.backbones.plain_vit import PlainViT
from ...models.layers import (
    tokens_to_map,
)
from .core import ParityAdapter, named_arch, register_parity_adapter


@register_parity_adapter('vit_dino')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any fixture of DINO's ``vision_transformer.py``: variant read from the state-dict shapes.

    Outputs: ``block{i}`` (block i's tokens, cls dropped, (B, D, gh, gw)), ``norm`` (final LayerNorm, same layout),
    ``cls`` (the normed cls token = DINO's ``model(x)`` with ``num_classes=0``). DINO's patch convolution drops the
    remainder pixels of a size that is not a multiple of the patch, so the input is cropped to whole patches first.
    """
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    dim, _, patch, _ = shapes['patch_embed.proj.weight']
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    variant = str(fixture.get('variant', '')).lower()
    named = named_arch(PlainViT, variant)
    heads = named['num_heads'] if named.get('embed_dims') == dim else max(1, dim // 64)  # DINO/DeiT: 64 per head
    arch = dict(embed_dims=dim, depth=depth, num_heads=heads, mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / dim,
                qkv_bias='blocks.0.attn.qkv.bias' in shapes)
    grid = math.isqrt(shapes['pos_embed'][1] - 1)
    block_ids = sorted(int(name[5:]) for name in fixture['outputs'] if name.startswith('block'))

    def build() -> nn.Module:
        return PlainViT(arch=arch, patch_size=patch, pretrain_img_size=grid * patch, pos_embed_interp='dino',
                        final_norm=True)

    def outputs(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        gh, gw = h // patch, w // patch
        x = x[..., :gh * patch, :gw * patch]
        captured: Dict[str, torch.Tensor] = {}
        hooks = [model.blocks[i].register_forward_hook(
            lambda _m, _i, out, i=i: captured.__setitem__(f'block{i}', out)) for i in block_ids]
        hooks.append(model.norm.register_forward_hook(lambda _m, _i, out: captured.__setitem__('norm', out)))
        original = model.pos_embed.detach().clone()
        if (gh, gw) == model.pretrain_grid and h != w:
            # DINO only skips its resize when the token count matches AND the image is square; otherwise it resizes
            # even a grid onto itself with scale (g + 0.1) / g, which shifts the samples slightly.
            with torch.no_grad():
                model.pos_embed.copy_(_dino_self_resample(model.pos_embed, gh))
        try:
            model(x)
        finally:
            for hook in hooks:
                hook.remove()
            with torch.no_grad():
                model.pos_embed.copy_(original)
        result = {name: tokens_to_map(t[:, 1:], (gh, gw)) for name, t in captured.items()}
        result['cls'] = captured['norm'][:, 0]
        return result

    return ParityAdapter(build=build, outputs=outputs)


def _dino_self_resample(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding`` for a non-square image whose token grid equals the pretraining grid."""
    patch_pos = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    scale = (grid + 0.1) / grid
    patch_pos = F.interpolate(patch_pos, scale_factor=(scale, scale), mode='bicubic')
    return torch.cat([pos[:, :1], patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)

"""Parity adapter of DeepViT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ...models.backbones.deepvit import PATCH_SIZE, DeepViT
from ...models.layers import (
    tokens_to_map,
)
from .core import ParityAdapter, named_arch, register_parity_adapter


def arch_from_official_keys(shapes: Dict[str, Sequence[int]], variant: str = '') -> dict:
    """Hyper-parameters of an official-layout state dict (``{key: shape}``). ``transform_scale`` and
    ``scale_adjustment`` are not visible in the weights: they come from the named official variant."""
    dim = shapes['pos_embed'][-1]
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    reattention = [i for i in range(depth) if f'blocks.{i}.attn.reatten_matrix.weight' in shapes]
    if reattention != list(range(depth - len(reattention), depth)):
        raise ValueError(f'DeepViT: re-attention in blocks {reattention}; the official models re-attend in the last '
                         f'blocks only')
    named = named_arch(DeepViT, variant)
    heads = shapes[f'blocks.{reattention[0]}.attn.reatten_matrix.weight'][0] if reattention else \
        named.get('num_heads', 12)
    return dict(embed_dims=dim, depth=depth, num_heads=heads, num_reattention_blocks=len(reattention),
                mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / dim, qkv_bias='blocks.0.attn.qkv.bias' in shapes,
                norm_eps=1e-6, cnn_stem='patch_embed.conv1.weight' in shapes,
                transform_scale=named.get('transform_scale', False),
                scale_adjustment=named.get('scale_adjustment', 1.0))


@register_parity_adapter('deepvit')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official DeepViT fixture: variant from the key shapes and the variant name, position grid from its
    length. Every block global (the official computation; at the pretraining size windows change nothing either).

    Outputs: ``block{i}`` (block i's tokens, cls dropped, (B, D, gh, gw)), ``norm`` (final LayerNorm, same layout).
    """
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    arch = arch_from_official_keys(shapes, str(fixture.get('variant', '')))
    grid = math.isqrt(shapes['pos_embed'][1] - 1)
    block_ids = sorted(int(name[5:]) for name in fixture['outputs'] if name.startswith('block'))

    def build() -> nn.Module:
        return DeepViT(arch=arch, pretrain_img_size=grid * PATCH_SIZE, window_block_indexes=())

    def outputs(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return block_and_norm_maps(model, x, block_ids)

    return ParityAdapter(build=build, outputs=outputs)


def block_and_norm_maps(model: DeepViT, x: torch.Tensor, block_ids: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Run the model on ``x``; the tokens after blocks ``block_ids`` (``block{i}``) and after the final norm
    (``norm``) as (B, D, gh, gw) maps, cls dropped (the layout of the official fixtures' outputs)."""
    captured: Dict[str, torch.Tensor] = {}
    modules = {f'block{i}': model.blocks[i] for i in block_ids}
    modules['norm'] = model.norm
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
             for name, module in modules.items()]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    gh, gw = -(-x.shape[-2] // PATCH_SIZE), -(-x.shape[-1] // PATCH_SIZE)
    return {name: tokens_to_map(t[:, 1:], (gh, gw)) for name, t in captured.items()}

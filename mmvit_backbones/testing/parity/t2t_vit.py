"""Parity adapter of T2TViT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
import re
from typing import Dict, Sequence

import torch

from ...models.backbones.t2t_vit import SOFT_SPLITS, Size2d, T2TViT, soft_split_size
from .core import ParityAdapter, register_parity_adapter


def arch_from_official_keys(shapes: Dict[str, Sequence[int]], variant: str = '') -> dict:
    """Hyper-parameters of an official-layout state dict (``{key: shape}``); heads come from the named variant
    when its width matches, else the 64-wide heads all released models use."""
    embed_dims = int(shapes['cls_token'][-1])
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    performer = 'tokens_to_token.attention1.w' in shapes
    token_dims = int(shapes['tokens_to_token.project.weight'][1]) // SOFT_SPLITS[2][0] ** 2
    name = variant.lower().replace('-', '_')
    name = name[len('t2t_vit_'):] if name.startswith('t2t_vit_') else name
    known = T2TViT.arch_zoo.get(name)
    num_heads = known['num_heads'] if known and known['embed_dims'] == embed_dims else max(1, embed_dims // 64)
    arch = dict(embed_dims=embed_dims, depth=depth, num_heads=num_heads,
                mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / embed_dims, token_dims=token_dims,
                qkv_bias='blocks.0.attn.qkv.bias' in shapes,
                t2t_type='performer' if performer else 'transformer')
    if performer:
        arch['kernel_ratio'] = shapes['tokens_to_token.attention1.w'][0] / token_dims
    return arch


def _official_grid(hw: Sequence[int]) -> Size2d:
    sizes = []
    for size in hw:
        for step in range(3):
            size = soft_split_size(size, step)
        sizes.append(size)
    return tuple(sizes)


@register_parity_adapter('t2t_vit')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official T2T-ViT fixture: variant from the key shapes, position-table grid from its length (the
    input's stride-16 grid when the counts match, else a square grid), outputs as the fixture notes say."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    arch = arch_from_official_keys(shapes, fixture.get('variant', ''))
    in_channels = shapes['tokens_to_token.attention1.' + (
        'kqv.weight' if arch['t2t_type'] == 'performer' else 'attn.qkv.weight')][1] // SOFT_SPLITS[0][0] ** 2
    grid_count = shapes['pos_embed'][1] - 1
    input_grid = _official_grid(fixture['input_hw'])
    side = math.isqrt(grid_count)
    if input_grid[0] * input_grid[1] == grid_count:
        pretrain_grid = input_grid
    elif side * side == grid_count:
        pretrain_grid = (side, side)
    else:
        raise ValueError(f'pos_embed of {grid_count} grid cells matches neither the input grid {input_grid} nor '
                         f'a square grid')
    blocks = sorted(int(m.group(1)) for m in (re.fullmatch(r'block(\d+)', k) for k in fixture['outputs']) if m)
    names = {'t2t_stride4': 'stride4', 't2t_stride8': 'stride8', 'tokens': 'tokens', 'norm': 'feature'}

    def build() -> T2TViT:
        return T2TViT(arch=arch, in_channels=in_channels, pretrain_img_size=tuple(16 * g for g in pretrain_grid))

    def outputs(model: T2TViT, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = model.forward_intermediates(x, block_indices=blocks, official_grid=True)
        result = {name: feats[key] for name, key in names.items()}
        result.update({f'block{i}': feats[f'block{i}'] for i in blocks})
        return result

    return ParityAdapter(build, outputs)

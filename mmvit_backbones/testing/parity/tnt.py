"""Parity adapter of TNT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
import re
from typing import Dict, Sequence

import torch

from ...models.backbones.tnt import NUM_WORDS, PATCH_SIZE, TNT
from .core import ParityAdapter, named_arch, register_parity_adapter


def arch_from_official_keys(shapes: Dict[str, Sequence[int]], variant: str = '') -> dict:
    """Hyper-parameters of an official-layout state dict (``{key: shape}``). The head counts are not visible in
    shapes: they come from the named variant when its widths match, else the official rule (64 channels per outer
    head, 4 inner heads)."""
    embed_dims = int(shapes['cls_token'][-1])
    num_words, inner_dims = int(shapes['inner_pos'][1]), int(shapes['inner_pos'][2])
    if num_words != NUM_WORDS:
        raise ValueError(f'TNT: inner_pos has {num_words} words per patch; only 16x16 patches of 4x4 words (every '
                         f'released model) are supported')
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    known = named_arch(TNT, variant)
    if known and known['embed_dims'] == embed_dims and known['inner_dims'] == inner_dims:
        num_heads, inner_heads = known['num_heads'], known['inner_heads']
    else:
        num_heads, inner_heads = max(1, embed_dims // 64), 4 if inner_dims % 4 == 0 else 1
    return dict(embed_dims=embed_dims, inner_dims=inner_dims, depth=depth, num_heads=num_heads,
                inner_heads=inner_heads, mlp_ratio=shapes['blocks.0.outer_mlp.fc1.weight'][0] / embed_dims,
                qkv_bias='blocks.0.outer_attn.qk.bias' in shapes)


@register_parity_adapter('tnt')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official TNT fixture: variant from the key shapes; ``outer_pos`` grid from its length (the input's
    patch grid when the counts match, else square). Outputs ``block{i}`` (sentence maps, class token dropped),
    ``inner_last`` (the last block's words as a stride-4 map), ``norm`` (final LayerNorm); the input's remainder
    pixels beyond whole patches are dropped as the official ``nn.Unfold`` does."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    arch = arch_from_official_keys(shapes, fixture.get('variant', ''))
    in_channels = int(shapes['patch_embed.proj.weight'][1])
    grid_count = int(shapes['outer_pos'][1]) - 1
    input_grid = tuple(int(s) // PATCH_SIZE for s in fixture['input_hw'])
    side = math.isqrt(grid_count)
    if input_grid[0] * input_grid[1] == grid_count:
        pretrain_grid = input_grid
    elif side * side == grid_count:
        pretrain_grid = (side, side)
    else:
        raise ValueError(f'outer_pos of {grid_count} grid cells matches neither the input grid {input_grid} nor a '
                         f'square grid')
    blocks = sorted(int(m.group(1)) for m in (re.fullmatch(r'block(\d+)', k) for k in fixture['outputs']) if m)

    def build() -> TNT:
        return TNT(arch=arch, in_channels=in_channels, pretrain_img_size=tuple(PATCH_SIZE * g for g in pretrain_grid))

    def outputs(model: TNT, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = model.forward_intermediates(x, block_indices=blocks, official_grid=True)
        result = {f'block{i}': feats[f'block{i}'] for i in blocks}
        result.update(inner_last=feats['words'], norm=feats['feature'])
        return result

    return ParityAdapter(build, outputs)

"""Parity adapter of GCViT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
from typing import Dict, Optional, Sequence

import torch

from ...models.backbones.gcvit import GCViT, num_query_pools
from .core import ParityAdapter, register_parity_adapter


def arch_from_official_keys(shapes: Dict[str, Sequence[int]], resolution: Optional[int] = None) -> dict:
    """Hyper-parameters of an official GC ViT from its state-dict shapes: dims from the stem, depths from the block
    indices, heads and pretraining windows from the relative-position tables, MLP ratio from ``fc1``, layer scale
    from ``gamma1``; the pretraining resolution from the level-0 query generator (its pooling steps take
    ``resolution / 4`` to the window) unless given."""
    dim = int(shapes['patch_embed.proj.weight'][0])
    depths, heads, windows, n_gen = [], [], [], []
    for i in range(4):
        prefix = f'levels.{i}.'
        blocks = {int(k.split('.')[3]) for k in shapes if k.startswith(prefix + 'blocks.')}
        depths.append(max(blocks) + 1)
        rows, num_heads = shapes[prefix + 'blocks.0.attn.relative_position_bias_table']
        heads.append(int(num_heads))
        windows.append((math.isqrt(int(rows)) + 1) // 2)
        n_gen.append(len({k.split('.')[4] for k in shapes if k.startswith(prefix + 'q_global_gen.to_q_global.')}))
    if resolution is None:
        resolution = 4 * windows[0] * 2 ** n_gen[0]
    arch = dict(embed_dims=dim, depths=depths, num_heads=heads,
                mlp_ratio=shapes['levels.0.blocks.0.mlp.fc1.weight'][0] / dim,
                layer_scale=1e-5 if 'levels.0.blocks.0.gamma1' in shapes else None,
                window_size=windows, resolution=int(resolution))
    expected = [max(num_query_pools(resolution // 2 ** (i + 2), windows[i]), 1) for i in range(4)]
    if expected != n_gen:
        raise ValueError(f'GC ViT checkpoint has {n_gen} FeatExtract modules per level, but resolution {resolution} '
                         f'with windows {windows} gives {expected}')
    return arch


@register_parity_adapter('gcvit')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    shapes = {k: tuple(shape) for k, shape, _ in fixture['keys']}
    h, w = fixture['input_hw']
    # the official classifier only runs at its pretraining resolution, so a square input gives it directly
    arch = arch_from_official_keys(shapes, resolution=h if h == w else None)

    def build() -> GCViT:
        return GCViT(arch=arch, drop_path_rate=0.0)

    def outputs(model: GCViT, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps = model.forward_levels(x)  # before the new per-output norms, as the fixture's outputs
        return {f'stage{i}': m.permute(0, 3, 1, 2).contiguous() for i, m in maps.items()}

    return ParityAdapter(build=build, outputs=outputs)

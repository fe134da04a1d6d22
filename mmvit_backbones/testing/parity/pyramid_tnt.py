"""Parity adapter of PyramidTNT: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
import re
from typing import Dict, Sequence, Tuple, Union

import torch

from ...models.backbones.pyramid_tnt import STEM_STRIDE, PyramidTNT, Size2d, infer_grid
from .core import ParityAdapter, register_parity_adapter

_OFFICIAL_NAME = re.compile(r'ptnt_(ti|s|m|b)_')


def settings_from_official_keys(variant: str, shapes: Dict[str, Sequence[int]],
                                input_hw: Sequence[int]) -> Tuple[Union[str, dict], Size2d, int]:
    """(arch, pretrain_img_size, in_channels) of an official PyramidTNT state-dict layout.

    Depths, widths, outer heads, mlp ratio, sr ratios and qkv bias are read from the key shapes; the inner heads are
    not visible in shapes, so a named official variant (``ptnt_s_patch16_256``...) or a zoo entry with the same
    shapes gives them (otherwise half the outer heads, the official ratio for S/M/B). The pretraining size is read
    from the stored ``outer_pos`` length (the official model is built with ``img_size`` = its input size, so the
    input grid is preferred when it fits), never from the variant name.
    """
    depths, outer_dims, inner_dims, outer_heads, sr_ratios = [], [], [], [], []
    for i in range(4):
        blocks = {int(m.group(1)) for k in shapes for m in [re.match(rf'stages\.{i}\.blocks\.(\d+)\.', k)] if m}
        depths.append(len(blocks))
        outer_dims.append(int(shapes[f'stages.{i}.blocks.0.outer_norm1.weight'][0]))
        inner_dims.append(int(shapes[f'stages.{i}.blocks.0.inner_attn.q.weight'][0]))
        _, heads, nq, nk = shapes[f'stages.{i}.relative_pos']
        outer_heads.append(int(heads))
        sr_ratios.append(max(1, round(math.sqrt(nq / nk))))
    derived = dict(depths=tuple(depths), outer_dims=tuple(outer_dims), inner_dims=tuple(inner_dims),
                   outer_heads=tuple(outer_heads), sr_ratios=tuple(sr_ratios),
                   mlp_ratio=shapes['stages.0.blocks.0.outer_mlp.fc1.weight'][0] / outer_dims[0],
                   qkv_bias='stages.0.blocks.0.outer_attn.q.bias' in shapes)

    def fits(zoo: dict) -> bool:
        return (all(tuple(zoo[k]) == derived[k] for k in ('depths', 'outer_dims', 'inner_dims', 'outer_heads'))
                and derived['sr_ratios'] == (4, 2, 1, 1) and derived['mlp_ratio'] == 4 and not derived['qkv_bias'])

    match = _OFFICIAL_NAME.search(variant or '')
    candidates = ([match.group(1)] if match else []) + ['ti', 's', 'm', 'b']
    arch = next((name for name in candidates if fits(PyramidTNT.arch_zoo[name])), None)
    if arch is None:
        arch = dict(derived, inner_heads=tuple(max(1, h // 2) for h in outer_heads))
    input_grid = (int(input_hw[0]) // STEM_STRIDE, int(input_hw[1]) // STEM_STRIDE)
    grid = infer_grid(int(shapes['outer_pos'][1]), input_grid)
    return arch, (grid[0] * STEM_STRIDE, grid[1] * STEM_STRIDE), int(shapes['patch_embed.common_conv.0.weight'][1])


@register_parity_adapter('pyramidtnt')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Outputs ``stage0..3``: the un-normalised sentence tokens after each stage, NCHW at strides 8..64."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    arch, pretrain_img_size, in_channels = settings_from_official_keys(fixture['variant'], shapes,
                                                                       fixture['input_hw'])

    def build() -> PyramidTNT:
        return PyramidTNT(arch=arch, in_channels=in_channels, pretrain_img_size=pretrain_img_size,
                          native_strides=True)

    def outputs(model: PyramidTNT, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {f'stage{i}': feature for i, feature in enumerate(model(x))}

    return ParityAdapter(build=build, outputs=outputs)

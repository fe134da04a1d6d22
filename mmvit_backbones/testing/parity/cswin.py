"""Parity adapter of CSWin: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import re
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from ...models.backbones.cswin import CSWin
from .core import ParityAdapter, register_parity_adapter

_NAMED_VARIANTS = {'tiny': 't', 'small': 's', 'base': 'b', 'large': 'l'}


def _int_list(text: str, name: str) -> Optional[List[int]]:
    match = re.search(name + r'\s*=\s*\[([\d,\s]+)\]', text)
    return [int(v) for v in match.group(1).split(',') if v.strip()] if match else None


def arch_from_official_keys(shapes: Mapping[str, Sequence[int]], description: str = '') -> dict:
    """Hyper-parameters of an official CSWin (classification or segmentation layout) from its state-dict shapes and
    a description (the fixture's variant / build call): channels from the stem and merges, depths from the block
    indices, MLP ratio from ``fc1``; heads and stripe widths, which no weight reveals, from ``num_heads=[...]`` /
    ``split_size=[...]`` in the description, else from the variant name (tiny/small/base/large, ``_384``)."""
    dims = [int(shapes['stage1_conv_embed.0.weight'][0])] + [int(shapes[f'merge{m}.conv.weight'][0])
                                                               for m in (1, 2, 3)]
    depths = [1 + max(int(k.split('.')[1]) for k in shapes if k.startswith(f'stage{s}.')) for s in range(1, 5)]
    heads = _int_list(description, 'num_heads')
    splits = _int_list(description, 'split_size')
    name = next((v for k, v in _NAMED_VARIANTS.items() if k in description.lower()), None)
    if heads is None:
        if name is None:
            raise ValueError(f'cannot tell the CSWin heads from {description!r}; name the variant '
                             f'(tiny/small/base/large) or give num_heads=[...]')
        heads = CSWin.arch_zoo[name]['num_heads']
    if splits is None:
        splits = [1, 2, 12, 12] if re.search(r'_384\b', description) else [1, 2, 7, 7]
    return dict(embed_dims=dims[0], dims=dims, depths=depths, num_heads=list(heads), split_size=list(splits),
                mlp_ratio=shapes['stage1.0.mlp.fc1.weight'][0] / dims[0])


def _fixture_adapter(fixture: dict, segmentation: bool) -> ParityAdapter:
    shapes = {k: tuple(s) for k, s, _ in fixture['keys']}
    description = f"{fixture.get('variant', '')} {fixture.get('build_call', '')}"
    arch = arch_from_official_keys(shapes, description)
    in_channels = shapes['stage1_conv_embed.0.weight'][1]

    def build() -> CSWin:
        return CSWin(arch=arch, in_channels=in_channels, drop_path_rate=0.0)

    def outputs(model: CSWin, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        # the official stem floors: reproduce its geometry at sizes that are not multiples of 4
        maps = model.forward_stages(x, pad_to_stride=False)
        if segmentation:  # after the segmentation backbone's own norm1..norm4 (ours norm0..norm3)
            return {f'out{i}': getattr(model, f'norm{i}')(m).permute(0, 3, 1, 2) for i, m in maps.items()}
        return {f'stage{i}': m.permute(0, 3, 1, 2) for i, m in maps.items()}  # before any norm

    return ParityAdapter(build=build, outputs=outputs)


@register_parity_adapter('cswin')
def _classification_adapter(fixture: dict) -> ParityAdapter:
    return _fixture_adapter(fixture, segmentation=False)


@register_parity_adapter('cswin_seg')
def _segmentation_adapter(fixture: dict) -> ParityAdapter:
    return _fixture_adapter(fixture, segmentation=True)

"""Parity adapter of MLPMixer: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import math
import re
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ...models.backbones.mlp_mixer import MLPMixer
from ...models.backbones.single_scale import AllMlpBackbone, Size2d
from .core import ParityAdapter, register_parity_adapter


def flax_same_padding(size: int, patch: int) -> Tuple[int, int]:
    """Flax ``nn.Conv(padding='SAME')`` with kernel = stride = patch: (before, after) padding of one axis."""
    total = math.ceil(size / patch) * patch - size
    return total // 2, total - total // 2


def pretrain_grid_for(num_tokens: int, input_grid: Size2d, what: str) -> Size2d:
    """The token grid of an official model built for ``num_tokens``: the fixture input's grid when the counts match
    (models are initialised at their input size), else the square grid."""
    side = math.isqrt(num_tokens)
    if input_grid[0] * input_grid[1] == num_tokens:
        return tuple(input_grid)
    if side * side == num_tokens:
        return side, side
    raise ValueError(f'{what}: {num_tokens} tokens match neither the input grid {input_grid} nor a square grid')


def capture_outputs(model: AllMlpBackbone, x: torch.Tensor, block_ids: Sequence[int],
                    stem: bool) -> Dict[str, torch.Tensor]:
    """Run ``model`` and return its stem/block/norm maps as NCHW (the parity fixtures' layout)."""
    captured: Dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        return lambda _m, _i, out: captured.__setitem__(name, out if out.dim() == 4 and name == 'stem'
                                                        else out.permute(0, 3, 1, 2))

    hooks = [model.blocks[i].register_forward_hook(keep(f'block{i}')) for i in block_ids]
    hooks.append(model.norm.register_forward_hook(keep('norm')))
    if stem:
        hooks.append(model.stem.proj.register_forward_hook(keep('stem')))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def block_ids_of(fixture: dict) -> List[int]:
    return sorted(int(m.group(1)) for m in (re.fullmatch(r'block(\d+)', k) for k in fixture['outputs']) if m)


@register_parity_adapter('mlp_mixer')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official Flax Mixer fixture: variant from the Flax key shapes, token grid from the token MLP (the input's
    grid when the counts match), input padded as Flax's ``SAME`` stem pads it. Outputs ``stem``, ``block{i}``,
    ``norm`` (NCHW); ``logits`` belong to the dropped head."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    patch, _, in_channels, dim = shapes['stem/kernel']
    depth = 1 + max(int(m.group(1)) for m in (re.match(r'MixerBlock_(\d+)/', k) for k in shapes) if m)
    num_tokens, tokens_dim = shapes['MixerBlock_0/token_mixing/Dense_0/kernel']
    channels_dim = shapes['MixerBlock_0/channel_mixing/Dense_0/kernel'][1]
    h, w = fixture['input_hw']
    grid = pretrain_grid_for(num_tokens, (math.ceil(h / patch), math.ceil(w / patch)), 'MLP-Mixer fixture')
    arch = dict(embed_dims=dim, depth=depth, tokens_mlp_dims=tokens_dim, channels_mlp_dims=channels_dim,
                patch_size=patch)

    def build() -> MLPMixer:
        return MLPMixer(arch=arch, in_channels=in_channels, pretrain_img_size=(grid[0] * patch, grid[1] * patch))

    def outputs(model: MLPMixer, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        (top, bottom), (left, right) = (flax_same_padding(s, patch) for s in x.shape[-2:])
        x = F.pad(x, (left, right, top, bottom))
        return capture_outputs(model, x, block_ids_of(fixture), stem=True)

    return ParityAdapter(build, outputs)

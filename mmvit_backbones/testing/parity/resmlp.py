"""Parity adapter of ResMLP: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
from typing import Dict

import torch

from ...models.backbones.resmlp import ResMLP
from .core import ParityAdapter, register_parity_adapter
from .mlp_mixer import block_ids_of, capture_outputs, pretrain_grid_for


@register_parity_adapter('resmlp')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official ResMLP fixture: variant from the key shapes, token grid from the token layer (the input's grid
    when the counts match, else square); the official patch convolution drops remainder pixels, so the input is
    cropped to whole patches. Outputs ``block{i}``, ``norm`` (NCHW); ``logits`` belong to the dropped head."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    dim, in_channels, patch, _ = shapes['patch_embed.proj.weight']
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    h, w = fixture['input_hw']
    grid = pretrain_grid_for(shapes['blocks.0.attn.weight'][0], (h // patch, w // patch), 'ResMLP fixture')
    arch = dict(embed_dims=dim, depth=depth, patch_size=patch, mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / dim)

    def build() -> ResMLP:
        return ResMLP(arch=arch, in_channels=in_channels, pretrain_img_size=(grid[0] * patch, grid[1] * patch))

    def outputs(model: ResMLP, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = x[..., :x.shape[-2] // patch * patch, :x.shape[-1] // patch * patch]
        return capture_outputs(model, x, block_ids_of(fixture), stem=False)

    return ParityAdapter(build, outputs)

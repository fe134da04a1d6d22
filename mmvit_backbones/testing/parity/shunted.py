"""Parity adapter of ShuntedTransformer: the backbone at a fixture's official variant, its outputs laid out as the
fixture's."""
import re
from typing import Dict

import torch

from ...models.backbones.shunted import ShuntedTransformer
from .core import ParityAdapter, register_parity_adapter


def _arch_from_official_keys(fixture: dict) -> dict:
    """Hyper-parameters of an official-layout state dict (any variant or custom build of ``SSA.py``)."""
    shapes = {k: tuple(s) for k, s, _ in fixture['keys']}
    dims, depths, mlp_ratios, sr_ratios = [], [], [], []
    for i in range(1, 5):
        dim = shapes[f'norm{i}.weight'][0]
        dims.append(dim)
        depths.append(1 + max(int(k.split('.')[1]) for k in shapes if k.startswith(f'block{i}.')))
        mlp_ratios.append(shapes[f'block{i}.0.mlp.fc1.weight'][0] / dim)
        sr = shapes.get(f'block{i}.0.attn.sr1.weight')
        sr_ratios.append(sr[-1] if sr is not None else 1)
    num_conv = sum(1 for k in shapes if re.match(r'patch_embed1\.conv\.\d+\.running_mean$', k)) - 1
    # head counts leave no trace in the weights: the official variants all use 2/4/8/16 (head_dim 32)
    variant = str(fixture.get('variant', '')).lower().replace('shunted_', '')
    heads = ShuntedTransformer.arch_zoo[variant]['num_heads'] if variant in ShuntedTransformer.arch_zoo else \
        tuple(max(1, d // 32) for d in dims)
    mlp_ratios = [int(r) if float(r).is_integer() else r for r in mlp_ratios]
    return dict(embed_dims=dims, depths=depths, num_heads=list(heads), mlp_ratios=mlp_ratios, sr_ratios=sr_ratios,
                num_conv=num_conv, qkv_bias='block1.0.attn.q.bias' in shapes)


@register_parity_adapter('shunted')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    arch = _arch_from_official_keys(fixture)
    in_channels = tuple(dict((k, s) for k, s, _ in fixture['keys'])['patch_embed1.conv.0.weight'])[1]

    def build() -> ShuntedTransformer:
        return ShuntedTransformer(arch=arch, in_channels=in_channels, drop_path_rate=0.0)

    def outputs(model: ShuntedTransformer, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        # The official model floors in its stem; for sizes that are multiples of 4 our padded forward is the same
        # computation, otherwise reproduce the official geometry by running the stages on the unpadded input.
        h, w = x.shape[-2:]
        maps = model(x) if h % 4 == 0 and w % 4 == 0 else model.forward_features(x)
        return {f'stage{i}': m for i, m in zip(model.out_indices, maps)}

    return ParityAdapter(build=build, outputs=outputs)

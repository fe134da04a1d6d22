"""Parity adapter of BoTNet: the backbone at a fixture's official variant, its outputs laid out as the fixture's."""
import re
from typing import Dict, Tuple

import torch
from timm.layers import make_divisible

from ...models.backbones.botnet import STAGE_STRIDES, BoTNet, Size2d
from .core import ParityAdapter, register_parity_adapter

# What the state dict of a timm ByobNet BoTNet does not show: activation, stem pooling (scale_pos_embed is False in
# all of them). Unknown names fall back on timm's naming rule: "...ts" = tiered stem + SiLU, "...t" = ReLU.
_TIMM_VARIANTS = {
    'botnet26t': dict(act='relu', stem_pool=True),
    'botnet50ts': dict(act='silu', stem_pool=True),
    'sebotnet33ts': dict(act='silu', stem_pool=False),
    'eca_botnext26ts': dict(act='silu', stem_pool=True),
}


def _arch_from_timm_keys(fixture: dict) -> Tuple[dict, Size2d]:
    """Arch dict and reference image size of a timm BoTNet fixture, read from its state-dict shapes."""
    shapes = {k: tuple(s) for k, s, _ in fixture['keys']}
    variant = str(fixture.get('variant', '')).split('.')[0]
    base = next((dict(v) for name, v in sorted(_TIMM_VARIANTS.items(), key=lambda kv: -len(kv[0]))
                 if variant.startswith(name)), None)
    if base is None:
        base = dict(act='silu' if re.search(r'\d+ts(_|$)', variant) else 'relu', stem_pool=True)
    stem_channels = []
    while f'stem.conv{len(stem_channels) + 1}.conv.weight' in shapes:
        stem_channels.append(shapes[f'stem.conv{len(stem_channels) + 1}.conv.weight'][0])
    depths, channels, attn_blocks, ratios, group_widths, gates = [], [], [], [], set(), set()
    num_heads, dim_heads, table = 4, [], None
    for i in range(4):
        entry_stride = 4 * 2 ** max(i - 1, 0)  # stride of the stage input: 4, 4, 8, 16
        j, blocks = 0, []
        while f'stages.{i}.{j}.conv1_1x1.conv.weight' in shapes:
            prefix = f'stages.{i}.{j}.'
            mid = shapes[prefix + 'conv1_1x1.conv.weight'][0]
            out = shapes[prefix + 'conv3_1x1.conv.weight'][0]
            qkv = shapes.get(prefix + 'self_attn.qkv.weight')
            if qkv is not None:
                blocks.append(j)
                rel_h = shapes[prefix + 'self_attn.pos_embed.height_rel']
                rel_w = shapes[prefix + 'self_attn.pos_embed.width_rel']
                num_heads = (qkv[0] - mid) // (2 * rel_h[1])
                dim_heads.append((rel_h[1], make_divisible(mid) // num_heads))
                if table is None:  # the first BoT block's input stride turns its table length into an image size
                    stride = entry_stride * (STAGE_STRIDES[i] if j > 0 else 1)
                    table = ((rel_h[0] + 1) // 2 * stride, (rel_w[0] + 1) // 2 * stride)
            else:
                per_group = shapes[prefix + 'conv2_kxk.conv.weight'][1]
                group_widths.add(per_group if per_group != mid else None)
                gates.add('se' if prefix + 'attn.fc1.weight' in shapes else
                          'eca' if prefix + 'attn.conv.weight' in shapes else None)
            j += 1
        depths.append(j)
        channels.append(out)
        ratios.append(mid / out)
        attn_blocks.append(tuple(blocks))
    unsupported = [k for k in shapes if re.search(r'\.attn_last\.|conv2b_kxk|\.attn\.conv2\.', k)]
    if unsupported or len(group_widths) > 1 or len(gates) > 1:
        raise NotImplementedError(f'BoTNet parity: variant {variant!r} has layers this backbone does not implement '
                                  f'({unsupported[:3]}, group widths {group_widths}, gates {gates})')
    # head width: derived from the block width (timm's default) unless one fixed `dim_head` is set for all blocks
    fixed = {got for got, derived in dim_heads if got != derived}
    if fixed and len({got for got, _ in dim_heads}) != 1:
        raise NotImplementedError(f'BoTNet parity: head widths {dim_heads} are neither derived nor constant')
    img_size = table or (256, 256)
    arch = dict(base, stem_channels=tuple(stem_channels), depths=tuple(depths), channels=tuple(channels),
                attn_blocks=tuple(attn_blocks), bottle_ratio=tuple(ratios), num_heads=num_heads,
                dim_head=dim_heads[0][0] if fixed else None, group_width=next(iter(group_widths), None),
                channel_attn=next(iter(gates), None), scale_pos_embed=False, img_size=img_size)
    return arch, img_size


@register_parity_adapter('botnet')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """timm BoTNet fixtures (botnet26t / botnet50ts / sebotnet33ts / eca_botnext26ts, any size): outputs ``stem``
    (after the stem pool, stride 4) and ``stage0..3``; ``logits`` belong to the dropped head."""
    arch, img_size = _arch_from_timm_keys(fixture)
    in_channels = dict((k, s) for k, s, _ in fixture['keys'])['stem.conv1.conv.weight'][1]

    def build() -> BoTNet:
        return BoTNet(arch=arch, in_channels=in_channels, pretrain_img_size=img_size)

    def outputs(model: BoTNet, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        result = {'stem': model.stem(x)}
        result.update({f'stage{i}': m for i, m in zip(model.out_indices, model(x))})
        return result

    return ParityAdapter(build=build, outputs=outputs)

"""Shunted Transformer (Ren et al., "Shunted Self-Attention via Multi-Scale Token Aggregation", CVPR 2022).

Re-implementation of the classification model of OliverRensu/Shunted-Transformer (``SSA.py``) as a dense-prediction
backbone. The official model already is a 4-stage pyramid (strides 4/8/16/32, channels 64/128/256/512); each stage ends
with its own LayerNorm, whose outputs are the four levels returned here.

Pieces, as the official code computes them:

* **stem** ("Head"): conv 7x7/2 (no bias) + BN + ReLU, ``num_conv`` x (conv 3x3 + BN + ReLU), conv 2x2/2 (bias),
  LayerNorm (eps 1e-5) -> stride 4;
* **overlapping patch embedding** before stages 2-4: conv 3x3/2 pad 1 + LayerNorm (eps 1e-5);
* **blocks** (pre-norm, LayerNorm eps 1e-6): shunted self-attention + detail-specific feed-forward;
* **shunted self-attention** (stages with spatial-reduction ratio ``r > 1``): the heads are split in two halves. The
  first half attends to keys/values aggregated with a conv of kernel = stride = ``r``, the second half to keys/values
  aggregated at ``r / 2``; each aggregation is conv + LayerNorm (eps 1e-5) + GELU + a linear giving k and v, and a
  depthwise 3x3 conv over the aggregated grid is added to v ("local enhancement"). The last stage (``r = 1``)
  uses plain keys/values and adds the depthwise conv of v to the attention *output* instead;
* **detail-specific feed-forward**: fc1 -> GELU(h + depthwise 3x3 conv(h)) -> fc2;
* a LayerNorm (eps 1e-6) closing every stage.

Any input size: the official stem floors (its last conv is 2x2/2 without padding), so the image is zero-padded at the
bottom/right to a multiple of 4 first; then level ``i`` has exactly ``ceil(H / 2**(i+2))`` x ``ceil(W / 2**(i+2))``
cells (the 3x3/2 pad-1 patch embeddings round up). The token-aggregation convs floor like the official ones (edge
rows beyond a multiple of the rate are left out of the reduced keys/values); detectors pad images to multiples of 32,
for which nothing is left out.

All attention goes through the shared :func:`~mmvit_backbones.models.layers.attention` (SDPA), which never
materialises the (stride-4 queries x reduced keys) matrices that made the official model run out of memory in
detection (upstream issue #3); ``with_cp`` checkpoints each block.
"""
import re
from collections import OrderedDict
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import (
    PatchConv2d,
    Size2d,
    attention,
    channels_last_conv_weights,
    init_conv_fan_out,
    init_linear_and_layernorm,
    tokens_to_map,
)
from ..layers.traceable import is_exporting, pad_to_multiple
from .base import OfficialWeights, PyramidBackbone

# LayerNorm eps of the official code: `norm_layer=partial(nn.LayerNorm, eps=1e-6)` is used for the blocks and the
# stage norms only; the stem, the patch embeddings and the attention's aggregation norms are plain nn.LayerNorm.
BLOCK_EPS = 1e-6
EMBED_EPS = 1e-5


class ConvStem(nn.Module):
    """The official "Head": conv 7x7/2 + BN + ReLU, ``num_conv`` x (conv 3x3 + BN + ReLU), conv 2x2/2, LayerNorm."""

    def __init__(self, in_channels: int, channels: int, num_conv: int):
        super().__init__()
        layers = []
        for i in range(num_conv + 1):
            conv = (nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False) if i == 0 else
                    nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False))
            layers.append(nn.Sequential(OrderedDict(
                conv=conv, bn=nn.BatchNorm2d(channels), act=nn.ReLU(inplace=True))))
        self.convs = nn.Sequential(*layers)
        self.proj = PatchConv2d(channels, channels, 2)
        self.norm = nn.LayerNorm(channels, eps=EMBED_EPS)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d]:
        x = self.proj(self.convs(x))  # (B, C, H/4, W/4) for H, W multiples of 4
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw  # (B, N, C)


class OverlapPatchEmbed(nn.Module):
    """Conv 3x3/2 (pad 1, so sizes round up) + LayerNorm: the downsampling between stages."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(channels, eps=EMBED_EPS)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d]:  # x: (B, Cin, H, W)
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class TokenAggregation(nn.Module):
    """One branch of shunted attention: keys/values from tokens merged ``rate`` x ``rate`` at a time.

    conv(kernel = stride = rate) -> LayerNorm -> GELU -> linear to (k, v) for ``num_heads`` heads, and v gets a
    depthwise 3x3 conv over the reduced grid added to it (the local enhancement).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, rate: int, qkv_bias: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim  # channels of k (and of v) of this branch: dim / 2
        self.reduce = PatchConv2d(dim, dim, rate)
        self.norm = nn.LayerNorm(dim, eps=EMBED_EPS)
        self.act = nn.GELU()
        self.kv = nn.Linear(dim, 2 * inner, bias=qkv_bias)
        self.local_conv = nn.Conv2d(inner, inner, kernel_size=3, padding=1, groups=inner)

    def forward(self, grid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """grid: (B, C, H, W) -> k, v: (B, heads, M, head_dim) with M = (H // rate) * (W // rate)."""
        reduced = self.reduce(grid)  # floors like the official view(H // sr, W // sr)
        b, _, h, w = reduced.shape
        tokens = self.act(self.norm(reduced.flatten(2).transpose(1, 2)))  # (B, M, C)
        k, v = self.kv(tokens).reshape(b, h * w, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # v as a (B, heads*head_dim, h, w) map; channel index = head * head_dim + j, as the official reshape
        v_map = v.permute(0, 1, 3, 2).reshape(b, -1, h, w)
        v = v + self.local_conv(v_map).reshape(b, self.num_heads, self.head_dim, h * w).transpose(-1, -2)
        return k, v


class ShuntedAttention(nn.Module):
    """Shunted self-attention.

    ``sr_ratio > 1``: the first half of the heads attends to tokens aggregated at ``sr_ratio``, the second half at
    ``sr_ratio / 2`` (both with locally enhanced values). ``sr_ratio == 1``: full attention, plus a depthwise conv of
    v added to the output.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        if sr_ratio > 1:
            half = num_heads // 2
            self.branches = nn.ModuleList([
                TokenAggregation(dim, half, self.head_dim, sr_ratio, qkv_bias),
                TokenAggregation(dim, half, self.head_dim, sr_ratio // 2, qkv_bias)])
        else:
            self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
            self.local_conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: Size2d) -> torch.Tensor:  # x: (B, N, C)
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, N, d)
        if self.sr_ratio > 1:
            grid = tokens_to_map(x, hw)
            half = self.num_heads // 2
            outs = []
            for i, branch in enumerate(self.branches):
                k, v = branch(grid)  # (B, heads/2, M_i, d)
                outs.append(attention(q[:, i * half:(i + 1) * half], k, v).transpose(1, 2))  # (B, N, heads/2, d)
            # heads of branch 0 first, as official; one copy (SDPA's outputs are token-major already)
            out = torch.cat(outs, dim=2).reshape(b, n, c)
        else:
            k, v = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            out = attention(q, k, v).transpose(1, 2).reshape(b, n, c)
            v_map = v.permute(0, 1, 3, 2).reshape(b, c, hw[0], hw[1])
            out = out + self.local_conv(v_map).flatten(2).transpose(1, 2)
        return self.proj(out)


class DetailFeedForward(nn.Module):
    """fc1 -> GELU(h + depthwise 3x3 conv(h)) -> fc2 (the official Mlp with its DWConv)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hw: Size2d) -> torch.Tensor:  # x: (B, N, C)
        x = self.fc1(x)
        x = self.act(x + self.dwconv(tokens_to_map(x, hw)).flatten(2).transpose(1, 2))
        return self.fc2(x)


class ShuntedBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, qkv_bias: bool,
                 drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = ShuntedAttention(dim, num_heads, sr_ratio, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = DetailFeedForward(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: Size2d) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x), hw))


class ShuntedStage(nn.Module):
    """Patch embedding (stages 2-4; stage 1 is fed by the stem), blocks and the stage's closing LayerNorm."""

    def __init__(self, in_dim: Optional[int], dim: int, depth: int, num_heads: int, mlp_ratio: float,
                 sr_ratio: int, qkv_bias: bool, drop_paths: Sequence[float]):
        super().__init__()
        self.downsample = OverlapPatchEmbed(in_dim, dim) if in_dim is not None else None
        self.blocks = nn.ModuleList(
            ShuntedBlock(dim, num_heads, mlp_ratio, sr_ratio, qkv_bias, drop_paths[j]) for j in range(depth))
        self.norm = nn.LayerNorm(dim, eps=BLOCK_EPS)


_DRIVE = 'https://drive.google.com/drive/folders/15iZKXFT7apjUSoN2WUMAbb0tvJgyh3YP'


@register_model
class ShuntedTransformer(PyramidBackbone):
    """Shunted Transformer backbone (T/S/B).

    Args:
        arch: ``'t'``, ``'s'``, ``'b'`` (also ``'tiny'``, ``'small'``, ``'base'``) or a dict with ``embed_dims``,
            ``depths``, ``num_heads``, ``mlp_ratios``, ``sr_ratios`` (1 or even; heads even where > 1),
            ``num_conv`` (extra 3x3 convs in the stem) and optionally ``qkv_bias`` (default True).
        in_channels: input channels.
        out_indices: which of the 4 levels (strides 4/8/16/32) to return.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        frozen_stages: -1 nothing, 0 the stem, i the stem and the first i stages.
        norm_eval: keep the stem's BatchNorms in eval mode during training.
        with_cp: activation checkpointing of each block.
        init_cfg: ``dict(type='Pretrained', checkpoint=<official ckpt_S.pth or converted file>)``.
    """

    arch_zoo = {
        't': dict(embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), mlp_ratios=(8, 8, 4, 4),
                  sr_ratios=(8, 4, 2, 1), depths=(1, 2, 4, 1), num_conv=0),
        's': dict(embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), mlp_ratios=(8, 8, 4, 4),
                  sr_ratios=(8, 4, 2, 1), depths=(2, 4, 12, 1), num_conv=1),
        'b': dict(embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), mlp_ratios=(8, 8, 4, 4),
                  sr_ratios=(8, 4, 2, 1), depths=(3, 4, 24, 2), num_conv=2),
    }
    arch_aliases = {'tiny': 't', 'small': 's', 'base': 'b'}
    essential_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios', 'num_conv')
    arch_defaults = dict(qkv_bias=True)
    official_weights = {
        name: OfficialWeights(name, _DRIVE, 'not stated (OliverRensu/Shunted-Transformer)', top1,
                              file=f'ckpt_{name.upper()}.pth', note='Google Drive folder; Baidu Pan '
                              'https://pan.baidu.com/s/1a9nVWpw2SzP0csCBCF8DNw (code hazr)')
        for name, top1 in (('t', 79.8), ('s', 82.9), ('b', 84.0))
    }
    weights_note = 'Linked from the README of https://github.com/OliverRensu/Shunted-Transformer.'
    new_param_prefixes = ()
    min_input_size = 32

    def __init__(self, arch: Union[str, dict] = 's', in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3), drop_path_rate: float = 0.0, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        s = self.arch_settings
        dims, depths, heads = self._check_settings(s)
        mlp_ratios, sr_ratios = tuple(s['mlp_ratios']), tuple(int(r) for r in s['sr_ratios'])
        qkv_bias = bool(s['qkv_bias'])
        self.check_drop_path_rate(drop_path_rate)
        self.embed_dims, self.depths = dims, depths
        self.out_channels = dims
        self.num_layers = sum(depths)

        total = sum(depths)  # stochastic depth rises linearly over all blocks (torch.linspace(0, rate, total))
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stem = ConvStem(in_channels, dims[0], int(s['num_conv']))
        self.stages = nn.ModuleList()
        self._first_block = []  # global index of each stage's first block (for layer depths)
        cur = 0
        for i in range(4):
            self.stages.append(ShuntedStage(dims[i - 1] if i else None, dims[i], depths[i], heads[i], mlp_ratios[i],
                                            sr_ratios[i], qkv_bias, dpr[cur:cur + depths[i]]))
            self._first_block.append(cur)
            cur += depths[i]
        # the convs run on token views (channels-last strides): NHWC weights spare two copies per conv
        channels_last_conv_weights(self)

    def init_weights(self) -> None:
        """The official initialisation, or (``init_cfg=dict(type='Pretrained', ...)``) the checkpoint.

        Every tensor of the model is in the official checkpoints, so the random initialisation is skipped when one
        is loaded (the loader reports any tensor a checkpoint lacks)."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        if not any(c.get('type') == 'Pretrained' for c in cfgs):
            self.apply(self._official_init)
        super().init_weights()

    @staticmethod
    def _check_settings(s: dict) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]:
        for key in ShuntedTransformer.essential_keys[:-1]:
            if not isinstance(s[key], (list, tuple)) or len(s[key]) != 4:
                raise ValueError(f'ShuntedTransformer: arch[{key!r}] must have 4 entries (one per stage), '
                                 f'got {s[key]!r}')
        dims, depths, heads = (tuple(int(v) for v in s[k]) for k in ('embed_dims', 'depths', 'num_heads'))
        if min(depths) < 1:
            raise ValueError(f'ShuntedTransformer: every stage needs at least one block, got depths {depths}')
        if not isinstance(s['num_conv'], int) or s['num_conv'] < 0:
            raise ValueError(f"ShuntedTransformer: num_conv must be an int >= 0, got {s['num_conv']!r}")
        for i, (dim, head, sr) in enumerate(zip(dims, heads, s['sr_ratios'])):
            if head < 1 or dim % head:
                raise ValueError(f'ShuntedTransformer: stage {i}: embed dim {dim} is not divisible by {head} heads')
            if sr != 1 and (sr < 2 or sr % 2):
                raise ValueError(f'ShuntedTransformer: stage {i}: sr_ratio must be 1 or an even number (the two '
                                 f'branches aggregate at r and r/2), got {sr!r}')
            if sr > 1 and head % 2:
                raise ValueError(f'ShuntedTransformer: stage {i}: shunted attention splits the heads in two '
                                 f'halves, so num_heads must be even where sr_ratio > 1, got {head}')
        return dims, depths, heads

    @staticmethod
    def _official_init(m: nn.Module) -> None:
        """Initialisation of the official code (``init_weights`` applies it before loading any checkpoint): the
        ViT-family Linear/LayerNorm init and the PVT-family fan-out Conv2d init."""
        init_linear_and_layernorm(m)
        init_conv_fan_out(m)

    # --------------------------------------------------------------------------------------------------- forward
    def forward_pyramid(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        h, w = x.shape[-2:]
        # The stem's last conv (2x2/2, no padding) floors: pad to a multiple of 4 so level 0 is ceil(H/4) x ceil(W/4);
        # the later 3x3/2 pad-1 embeddings round up by themselves, so no crop is needed.
        if is_exporting() or h % 4 or w % 4:  # (a traced size always pads, possibly by 0)
            x = F.pad(x, (0, pad_to_multiple(w, 4), 0, pad_to_multiple(h, 4)))
        return self.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The official computation on ``x`` as it is (no padding): the maps after each stage norm."""
        outs = []
        last = max(self.out_indices)
        for i, stage in enumerate(self.stages[:last + 1]):
            tokens, hw = self.stem(x) if i == 0 else stage.downsample(x)
            for block in stage.blocks:
                tokens = self.checkpoint(block, tokens, hw)
            x = tokens_to_map(stage.norm(tokens), hw)  # (B, C_i, H_i, W_i)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    # -------------------------------------------------------------------------------------------------- training
    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        yield self.stem
        yield from self.stages[:frozen_stages]

    def layer_depth(self, name: str) -> int:
        """0 stem; a stage's patch embedding goes with its first block; a stage norm with its last block."""
        if name.startswith('stem.'):
            return 0
        match = re.match(r'stages\.(\d+)\.(downsample|blocks\.(\d+)|norm)\.', name)
        if match is None:
            return self.num_layers + 1
        stage = int(match.group(1))
        first = self._first_block[stage]
        if match.group(2) == 'downsample':
            return first + 1
        if match.group(2) == 'norm':
            return first + self.depths[stage]
        return first + int(match.group(3)) + 1

    # ------------------------------------------------------------------------------------------------ checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official ``SSA.py`` keys -> this module's; drops the classifier ``head``; converted keys pass through.

        ``patch_embed1.conv.{3j, 3j+1}`` (conv, BN of the j-th stem conv) -> ``stem.convs.j.{conv, bn}``, its last
        index (the 2x2 conv) -> ``stem.proj``; ``patch_embed{i+1}`` -> ``stages.i.downsample``; ``block{i+1}.j`` ->
        ``stages.i.blocks.j`` with ``attn.{sr,norm,kv,local_conv}{1,2}`` -> ``attn.branches.{0,1}.{reduce,norm,kv,
        local_conv}`` and ``mlp.dwconv.dwconv`` -> ``mlp.dwconv``; ``norm{i+1}`` -> ``stages.i.norm``.
        """
        stem_ids = sorted({int(m.group(1)) for k in state_dict
                           for m in [re.match(r'patch_embed1\.conv\.(\d+)\.', k)] if m})
        bn_ids = {int(re.match(r'patch_embed1\.conv\.(\d+)\.', k).group(1)) for k in state_dict
                  if re.match(r'patch_embed1\.conv\.\d+\.running_mean$', k)}
        proj_id = max(stem_ids) if stem_ids else None
        branch_part = {'sr': 'reduce', 'norm': 'norm', 'kv': 'kv', 'local_conv': 'local_conv'}

        def rename(key: str) -> Optional[str]:
            m = re.match(r'patch_embed1\.conv\.(\d+)\.(.+)$', key)
            if m:
                idx, rest = int(m.group(1)), m.group(2)
                if idx == proj_id:
                    return f'stem.proj.{rest}'
                if idx in bn_ids:
                    return f'stem.convs.{(idx - 1) // 3}.bn.{rest}'
                return f'stem.convs.{idx // 3}.conv.{rest}'
            m = re.match(r'patch_embed1\.norm\.(.+)$', key)
            if m:
                return f'stem.norm.{m.group(1)}'
            m = re.match(r'patch_embed(\d)\.(.+)$', key)
            if m:
                return f'stages.{int(m.group(1)) - 1}.downsample.{m.group(2)}'
            m = re.match(r'norm(\d)\.(.+)$', key)
            if m:
                return f'stages.{int(m.group(1)) - 1}.norm.{m.group(2)}'
            m = re.match(r'block(\d)\.(\d+)\.(.+)$', key)
            if m:
                rest = m.group(3)
                b = re.match(r'attn\.(sr|norm|kv|local_conv)([12])\.(.+)$', rest)
                if b:
                    rest = f'attn.branches.{int(b.group(2)) - 1}.{branch_part[b.group(1)]}.{b.group(3)}'
                rest = rest.replace('mlp.dwconv.dwconv.', 'mlp.dwconv.')
                return f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{rest}'
            if key.startswith('head.'):
                return None  # classifier
            return key  # already converted (or foreign: reported by the loader)

        out = {}
        for key, value in state_dict.items():
            new = rename(key)
            if new is not None:
                out[new] = value
        return out

"""GC ViT (Hatamizadeh et al., "Global Context Vision Transformers", ICML 2023, arXiv 2206.09959).

Re-implementation of the classification model of NVlabs/GCVit (``models/gc_vit.py``) as a dense-prediction backbone,
with the detection behaviour of the official mmdet 2.x backbone (``detection/models/gc_vit.py``) made general.

Pieces, as the official code computes them (all LayerNorms eps 1e-5, maps channel-last inside the network):

* **stem**: conv 3x3/2 (with bias) -> ``ReduceSize(keep_dim)`` -> stride 4, ``C`` channels;
* **ReduceSize** (the Fused-MBConv-style downsampler): LN -> ``x + 1x1(SE(GELU(dw3x3(x))))`` -> conv 3x3/2 (no bias,
  ``C -> 2C``, or ``C -> C`` in the stem) -> LN;
* **levels** ``i = 0..3`` at strides 4/8/16/32 with ``C * 2**i`` channels: a *global query generator* run once on
  the level input, then ``depth`` blocks alternating *local* window attention (even index, q/k/v from the window)
  and *global* window attention (odd index, k/v from the window, the query from the generator, shared by all
  windows of an image), both with a Swin relative-position bias; then the ``ReduceSize`` downsampler (not after the
  last level);
* **global query generator**: a stack of ``FeatExtract`` (``x + 1x1(SE(GELU(dw3x3(x))))``, then max-pool 3x3/2
  pad 1) that shrinks the level map to one window. Their number is fixed by the pretraining ``resolution`` and
  window: as many pooling steps as take ``resolution / 2**(i+2)`` down to the window (3/2/0/0 at 224 with windows
  7/7/14/7), and one non-pooling ``FeatExtract`` where no pooling is needed. It must match the checkpoint.
* **blocks** (pre-norm): ``x + gamma1 * attn(norm1(x))``, ``x + gamma2 * mlp(norm2(x))`` (``gamma`` = layer scale,
  S/B/L only), MLP ``fc1 -> GELU -> fc2``.

The levels' outputs are taken after their blocks and before their downsampler and pass through new per-output
LayerNorms ``norm{i}`` (as the official detector; they are not in ImageNet checkpoints, and keep the official names
so that the official detector's checkpoints load too).

Any input size (the official classifier only runs at its pretraining resolution: NVlabs/GCVit #44, #26, #9):

* **windows**: ``window_size`` (default: the pretraining windows) sets the attention window of each level; the
  official detector uses 24. Each block zero-pads its normalised input at the bottom/right to a multiple of the
  window and crops the attention output back (as the official detector: no attention mask, the padded tokens are
  zeros). Level ``i`` has exactly ``ceil(H / 2**(i+2)) x ceil(W / 2**(i+2))`` cells since every conv/pool of
  stride 2 has padding 1 (``ceil`` at each step).
* **global query**: after the ``FeatExtract`` stack, as long as halving the map keeps both sides at least one
  window, it is max-pooled 3x3/2 again (parameter-free; the official detector hard-wires one such pool at level 2
  for window 24, which this reproduces at detection sizes), then resized to ``window x window`` with
  ``query_resize_mode`` (bicubic, as the official detector). At the pretraining resolution with the pretraining
  windows the stack already outputs one window: no extra pool, no resize, the classifier's exact computation.
* **relative-position tables** ``((2w-1)**2, heads)`` follow the run-time window: a ``load_state_dict`` pre-hook
  resizes checkpoint tables bicubically (as the official detector does at load) and drops the checkpoint's
  ``relative_position_index``, which is a non-persistent buffer regenerated for the run-time window.

All attention goes through the shared :func:`~mmvit_backbones.models.layers.attention` (SDPA); the gathered bias of
each block is cached with :class:`SizeCache` at inference. ``with_cp`` checkpoints each block.
"""
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import (
    Mlp,
    SizeCache,
    attention,
    channels_last_conv_weights,
    init_linear_and_layernorm,
    resize_relative_position_table,
)
from ..layers.traceable import ceil_div, is_exporting, repeated_max_pool, size_min, traced_interpolate
from .base import OfficialWeights, PyramidBackbone

QUERY_RESIZE_MODES = ('bicubic', 'bilinear', 'nearest', 'area', 'adaptive_max')
# Most extra global-query pools an ONNX export can apply (a query map up to 2**9 windows wide, far beyond any image).
MAX_TRACED_QUERY_POOLS = 8


def num_query_pools(stage_resolution: int, window: int) -> int:
    """Pooling steps (max-pool 3x3/2 pad 1, i.e. ``ceil(r / 2)``) that take a map of side ``stage_resolution``
    down to the window without going below it: 3 for 56 -> 7, 0 for 14 -> 14."""
    pools = 0
    while math.ceil(stage_resolution / 2) >= window:
        stage_resolution = math.ceil(stage_resolution / 2)
        pools += 1
    return pools


# --------------------------------------------------------------------------------------------------------- layers
class SqueezeExcite(nn.Module):
    """Channel gate: ``x * sigmoid(fc(GELU(fc(mean(x)))))``, hidden ``dim / 4``, no biases (official ``SE``)."""

    def __init__(self, dim: int, expansion: float = 0.25):
        super().__init__()
        hidden = int(dim * expansion)
        self.fc = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


def fused_mbconv(dim: int) -> nn.Sequential:
    """The residual branch shared by ReduceSize and FeatExtract: dw 3x3 -> GELU -> SE -> 1x1 (no biases).

    Indices 0..3 are the official checkpoint's ``conv.{0,2.fc.*,3}`` keys.
    """
    return nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False), nn.GELU(), SqueezeExcite(dim),
                         nn.Conv2d(dim, dim, 1, bias=False))


class ReduceSize(nn.Module):
    """Downsampler: LN -> residual Fused-MBConv -> conv 3x3/2 (``dim -> dim`` or ``2 dim``) -> LN."""

    def __init__(self, dim: int, keep_dim: bool = False):
        super().__init__()
        out_dim = dim if keep_dim else 2 * dim
        self.conv = fused_mbconv(dim)
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C')
        x = self.norm1(x).permute(0, 3, 1, 2)
        x = x + self.conv(x)
        return self.norm2(self.reduction(x).permute(0, 2, 3, 1))


class Stem(nn.Module):
    """conv 3x3/2 + ReduceSize(keep_dim): image -> (B, ceil(H/4), ceil(W/4), dim) channel-last."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, 2, 1)
        self.conv_down = ReduceSize(dim, keep_dim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_down(self.proj(x).permute(0, 2, 3, 1))


class FeatExtract(nn.Module):
    """``x + FusedMBConv(x)``, then (``pool``) max-pool 3x3/2 pad 1. Channel-first."""

    def __init__(self, dim: int, pool: bool):
        super().__init__()
        self.conv = fused_mbconv(dim)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = x + self.conv(x)
        return F.max_pool2d(x, 3, 2, 1) if self.pool else x


class GlobalQueryGen(nn.Module):
    """Global query tokens of one level: the level map shrunk to one window, split into heads.

    ``to_q_global`` holds ``max(pools, 1)`` FeatExtract modules (``pools`` from the pretraining resolution/window).
    At other sizes the result is pooled further while both sides stay >= the window and resized to the window.
    """

    def __init__(self, dim: int, num_heads: int, window: int, pools: int, resize_mode: str = 'bicubic',
                 adaptive_pool: bool = True):
        super().__init__()
        self.to_q_global = nn.Sequential(*[FeatExtract(dim, pool=pools > 0) for _ in range(max(pools, 1))])
        self.num_heads = num_heads
        self.window = window
        self.resize_mode = resize_mode
        self.adaptive_pool = adaptive_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) level input -> (B, heads, window**2, C // heads)."""
        x = self.to_q_global(x)
        w = self.window
        if is_exporting() and self.resize_mode in ('bicubic', 'bilinear', 'nearest'):
            return self._tokens(self._fit_traced(x))
        if self.adaptive_pool:
            # further parameter-free pooling towards the window keeps the query a summary of the whole map rather
            # than a sparse bicubic sampling of it (large detection images)
            while min(math.ceil(x.shape[-2] / 2), math.ceil(x.shape[-1] / 2)) >= w:
                x = F.max_pool2d(x, 3, 2, 1)
        if tuple(x.shape[-2:]) != (w, w):
            if self.resize_mode == 'adaptive_max':
                x = F.adaptive_max_pool2d(x, (w, w))
            elif self.resize_mode in ('nearest', 'area'):
                x = F.interpolate(x, size=(w, w), mode=self.resize_mode)
            else:
                x = F.interpolate(x, size=(w, w), mode=self.resize_mode, align_corners=False)
        return self._tokens(x)

    def _fit_traced(self, x: torch.Tensor) -> torch.Tensor:
        """The pooling and resize of :meth:`forward` for a traced size (ONNX export): the number of pools is
        computed in the graph, the resize always runs (the identity when the map already is one window).
        ``area``/``adaptive_max`` have no ONNX form for a dynamic size and take the eager path (the exporter
        reports them)."""
        w = self.window
        if self.adaptive_pool:
            side = size_min(x.shape[-2], x.shape[-1])
            # the eager loop pools while ceil(side / 2**t) >= w: count those t
            pools = sum((ceil_div(side, 2 ** t) >= w).long() for t in range(1, MAX_TRACED_QUERY_POOLS + 1))
            x = repeated_max_pool(x, pools, MAX_TRACED_QUERY_POOLS)
        return traced_interpolate(x, (w, w), self.resize_mode)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, w, w) -> (B, heads, w*w, C // heads)."""
        w = self.window
        b, c = x.shape[:2]
        # tokens row-major over the window, channels split head-major (the official reshape)
        return x.flatten(2).transpose(1, 2).reshape(b, w * w, self.num_heads, c // self.num_heads).transpose(1, 2)


def relative_position_index(window: int, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Swin's (w*w, w*w) index into a ((2w-1)**2)-row table: (dy + w - 1) * (2w - 1) + (dx + w - 1).
    ``positions``: ``0 .. w-1`` as a tensor computed in the caller's graph (default ``arange(w)``)."""
    positions = torch.arange(window) if positions is None else positions
    coords = torch.stack(torch.meshgrid(positions, positions, indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _resize_table_on_load(module: 'WindowAttention', state_dict: StateDict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: fit a checkpoint's relative-position table to this module's window (bicubic, as
    the official detector) and drop its index buffer (regenerated for the run-time window)."""
    state_dict.pop(prefix + 'relative_position_index', None)
    key = prefix + 'relative_position_bias_table'
    table = state_dict.get(key)
    own = module.relative_position_bias_table
    if table is None or table.dim() != 2 or table.shape == own.shape or table.shape[1] != own.shape[1]:
        return  # nothing to do, or a mismatch that load_state_dict reports itself
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or side % 2 == 0:
        return
    src = (side + 1) // 2
    state_dict[key] = resize_relative_position_table(table, (src, src), (module.window, module.window))


class WindowAttention(nn.Module):
    """Window attention with a relative-position bias; local (q, k, v from the window: ``qkv`` gives 3C) or global
    (k, v from the window: ``qkv`` gives 2C; the query is the level's global query, the same for every window)."""

    def __init__(self, dim: int, num_heads: int, window: int, global_query: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.window = window
        self.global_query = global_query
        self.qkv = nn.Linear(dim, dim * (2 if global_query else 3))
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window), persistent=False)
        self.bias_cache = SizeCache(max_entries=1)
        self.register_load_state_dict_pre_hook(_resize_table_on_load)

    def bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the table; cached when no gradient flows to the table."""
        def compute() -> torch.Tensor:
            n = self.window * self.window
            table = self.relative_position_bias_table
            if is_exporting():
                # computed in the graph from positions derived from the table (a parameter), so that no exporter
                # pass folds it into an (N, N) int64 constant per block: together almost half the weights' size at
                # the detection window 24
                positions = torch.ones_like(table[:self.window, 0]).cumsum(0).long() - 1
                index = relative_position_index(self.window, positions)
            else:
                index = self.relative_position_index
            return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()
        return self.bias_cache.get(self.window, [self.relative_position_bias_table], compute)

    def forward(self, x: torch.Tensor, q_global: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B * nW, N, C) windows of B images; q_global: (B, heads, N, head_dim) -> (B * nW, N, C)."""
        bw, n, c = x.shape
        parts = 2 if self.global_query else 3
        # unbind, not indexing: the backward of three selects zero-fills three qkv-sized tensors and sums them (in
        # a profile of GC ViT-T's training step at 800x1333: 3%); unbind's stacks the three gradients once
        qkv = self.qkv(x).reshape(bw, n, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.global_query:
            k, v = qkv
            b = q_global.shape[0]
            q = q_global[:, None].expand(b, bw // b, -1, -1, -1).reshape(bw, self.num_heads, n, self.head_dim)
        else:
            q, k, v = qkv
        out = attention(q, k, v, bias=self.bias().unsqueeze(0), scale=self.scale)  # (B * nW, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class GCViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, global_query: bool,
                 drop_path: float, layer_scale: Optional[float]):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, global_query)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma1 = self.gamma2 = None

    def forward(self, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        b, h, w, c = x.shape
        win = self.window
        y = self.norm1(x)
        # windows per column/row first, the padded size as their multiple: with symbolic sizes (torch.compile)
        # the partition's views then need no proof that h + (-h % win) is a multiple of win
        nh, nw = ceil_div(h, win), ceil_div(w, win)
        hp, wp = nh * win, nw * win
        exporting = is_exporting()  # traced sizes: pad and crop always (possibly by 0)
        if exporting or hp != h or wp != w:  # zeros after the norm, as the official detector; cropped after attention
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        # window partition: (B, Hp, Wp, C) -> (B * nW, win * win, C), windows in row-major order per image
        y = y.view(b, nh, win, nw, win, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, c)
        y = self.attn(y, q_global)
        y = y.view(b, nh, nw, win, win, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if exporting or hp != h or wp != w:
            y = y[:, :h, :w]
        x = x + self.drop_path(y if self.gamma1 is None else self.gamma1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma2 is None else self.gamma2 * y)


class GCViTLevel(nn.Module):
    """Blocks (local/global alternating) + the global query generator + the downsampler to the next level."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, query_pools: int, mlp_ratio: float,
                 drop_paths: Sequence[float], layer_scale: Optional[float], downsample: bool,
                 query_resize_mode: str, adaptive_query_pool: bool):
        super().__init__()
        self.blocks = nn.ModuleList([
            GCViTBlock(dim, num_heads, window, mlp_ratio, global_query=j % 2 == 1, drop_path=drop_paths[j],
                       layer_scale=layer_scale) for j in range(depth)])
        self.downsample = ReduceSize(dim) if downsample else None
        self.q_global_gen = GlobalQueryGen(dim, num_heads, window, query_pools, query_resize_mode,
                                           adaptive_query_pool)


# ------------------------------------------------------------------------------------------------------ backbone
_HUB = 'https://huggingface.co/nvidia/GCViT/resolve/main/'
_NC = 'CC-BY-NC-SA-4.0'


@register_model
class GCViT(PyramidBackbone):
    """GC ViT backbone: 4 NCHW levels at strides 4/8/16/32 with ``C, 2C, 4C, 8C`` channels for any input size.

    Args:
        arch: ``'xxt'``, ``'xt'``, ``'t'``, ``'t2'``, ``'s'``, ``'s2'``, ``'b'``, ``'l'`` (ImageNet-1k, 224),
            ``'l-384'``/``'l-512'`` (ImageNet-21k fine-tuned at 384/512), long names (``'tiny'`` ...) too; or a dict
            with ``embed_dims``, ``depths``, ``num_heads``, ``mlp_ratio`` and optionally ``layer_scale`` (None),
            ``window_size`` (pretraining windows, (7, 7, 14, 7)) and ``resolution`` (pretraining size, 224; these
            two fix how many FeatExtract modules each global query generator has, as in the checkpoint).
        window_size: attention window of each level at run time (int or 4 ints); None: the pretraining windows.
            The official detector uses 24. Relative-position tables are resized to it when a checkpoint loads.
        query_resize_mode: how the global query is fitted to the window when its map differs ('bicubic' as the
            official detector, 'bilinear', 'nearest', 'area' or 'adaptive_max').
        adaptive_query_pool: pool the global query map further (parameter-free max-pool 3x3/2) while both sides
            stay >= the window before resizing it (see the module docstring). False: resize directly.
        drop_path_rate: stochastic depth, linear over all blocks (official detector: 0.2 for T).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see :class:`PyramidBackbone`.
    """

    arch_zoo = {
        'xxt': dict(embed_dims=64, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), mlp_ratio=3),
        'xt': dict(embed_dims=64, depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3),
        't': dict(embed_dims=64, depths=(3, 4, 19, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3),
        't2': dict(embed_dims=64, depths=(3, 4, 29, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3),
        's': dict(embed_dims=96, depths=(3, 4, 19, 5), num_heads=(3, 6, 12, 24), mlp_ratio=2, layer_scale=1e-5),
        's2': dict(embed_dims=96, depths=(3, 4, 23, 5), num_heads=(3, 6, 12, 24), mlp_ratio=3, layer_scale=1e-5),
        'b': dict(embed_dims=128, depths=(3, 4, 19, 5), num_heads=(4, 8, 16, 32), mlp_ratio=2, layer_scale=1e-5),
        'l': dict(embed_dims=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5),
        'l-384': dict(embed_dims=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5,
                      window_size=(12, 12, 24, 12), resolution=384),
        'l-512': dict(embed_dims=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5,
                      window_size=(16, 16, 32, 16), resolution=512),
    }
    arch_aliases = {'xxtiny': 'xxt', 'xtiny': 'xt', 'tiny': 't', 'tiny2': 't2', 'small': 's', 'small2': 's2',
                    'base': 'b', 'large': 'l', 'large-384': 'l-384', 'large-512': 'l-512'}
    essential_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratio')
    arch_defaults = dict(layer_scale=None, window_size=(7, 7, 14, 7), resolution=224)
    official_weights = {
        'xxt': OfficialWeights('xxt', _HUB + 'gcvit_1k_xxtiny.pth.tar', _NC, 79.9),
        'xt': OfficialWeights('xt', _HUB + 'gcvit_1k_xtiny.pth.tar', _NC, 82.0),
        't': OfficialWeights('t', _HUB + 'gcvit_1k_tiny.pth.tar', _NC, 83.5),
        't2': OfficialWeights('t2', _HUB + 'gcvit_1k_tiny2.pth.tar', _NC, 83.7),
        's': OfficialWeights('s', _HUB + 'gcvit_1k_small.pth.tar', _NC, 84.3),
        's2': OfficialWeights('s2', _HUB + 'gcvit_1k_small2.pth.tar', _NC, 84.8),
        'b': OfficialWeights('b', _HUB + 'gcvit_1k_base.pth.tar', _NC, 85.0),
        'l': OfficialWeights('l', _HUB + 'gcvit_1k_large.pth.tar', _NC, 85.7),
        'l_384': OfficialWeights('l-384', _HUB + 'gcvit_21k_large_384.pth.tar', _NC, 87.4, input_size=384,
                                 note='ImageNet-21k pretrained, fine-tuned on ImageNet-1k'),
        'l_512': OfficialWeights('l-512', _HUB + 'gcvit_21k_large_512.pth.tar', _NC, 87.6, input_size=512,
                                 note='ImageNet-21k pretrained, fine-tuned on ImageNet-1k'),
    }
    weights_note = 'Listed in the NVlabs/GCVit README; non-commercial licence.'
    new_param_prefixes = ('norm0.', 'norm1.', 'norm2.', 'norm3.')

    def __init__(self, arch: Union[str, dict] = 't', in_channels: int = 3,
                 window_size: Optional[Union[int, Sequence[int]]] = None, query_resize_mode: str = 'bicubic',
                 adaptive_query_pool: bool = True, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        s = self.arch_settings
        dim, depths, heads, pre_windows, resolution = self._check_settings(s)
        self.depths = depths
        self.windows = pre_windows if window_size is None else self._as_windows(window_size, 'window_size')
        if query_resize_mode not in QUERY_RESIZE_MODES:
            raise ValueError(f'GCViT: query_resize_mode must be one of {QUERY_RESIZE_MODES}, got '
                             f'{query_resize_mode!r}')
        self.check_drop_path_rate(drop_path_rate)
        self.num_layers = sum(depths)
        self.out_channels = tuple(dim * 2 ** i for i in range(4))
        # pooling FeatExtracts per level, as in the checkpoint (3/2/0/0 at 224 with windows 7/7/14/7)
        self.query_pools = tuple(num_query_pools(resolution // 2 ** (i + 2), pre_windows[i]) for i in range(4))

        self.patch_embed = Stem(in_channels, dim)
        dpr = torch.linspace(0, drop_path_rate, self.num_layers, device='cpu').tolist()
        self.levels = nn.ModuleList()
        for i in range(4):
            first = sum(depths[:i])
            self.levels.append(GCViTLevel(
                self.out_channels[i], depths[i], heads[i], self.windows[i], self.query_pools[i], s['mlp_ratio'],
                dpr[first:first + depths[i]], s['layer_scale'], downsample=i < 3,
                query_resize_mode=query_resize_mode, adaptive_query_pool=adaptive_query_pool))
        for i in self.out_indices:  # new per-output norms (official detector's names)
            self.add_module(f'norm{i}', nn.LayerNorm(self.out_channels[i]))
        self.apply(self._official_init)
        # the convs see channel-last maps through permute views: NHWC weights spare the layout copies
        channels_last_conv_weights(self)

    # ----------------------------------------------------------------------------------------------- arguments
    @staticmethod
    def _as_windows(value, name: str) -> Tuple[int, ...]:
        windows = (value, ) * 4 if isinstance(value, int) else tuple(value)
        if len(windows) != 4 or not all(isinstance(w, int) and w >= 1 for w in windows):
            raise ValueError(f'GCViT: {name} must be a positive int or 4 positive ints (one per level), got '
                             f'{value!r}')
        return windows

    @classmethod
    def _check_settings(cls, s: dict) -> Tuple[int, Tuple[int, ...], Tuple[int, ...], Tuple[int, ...], int]:
        dim, depths, heads = s['embed_dims'], tuple(s['depths']), tuple(s['num_heads'])
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f'GCViT: embed_dims must be a positive int, got {dim!r}')
        if len(depths) != 4 or len(heads) != 4 or not all(isinstance(d, int) and d >= 1 for d in depths):
            raise ValueError(f'GCViT: depths and num_heads need 4 entries (one per level; depths >= 1), got '
                             f'{depths!r} and {heads!r}')
        for i, h in enumerate(heads):
            if not isinstance(h, int) or h < 1 or (dim * 2 ** i) % h:
                raise ValueError(f'GCViT: level {i} has {dim * 2 ** i} channels, not divisible by num_heads {h!r}')
        if not s['mlp_ratio'] > 0:
            raise ValueError(f"GCViT: mlp_ratio must be > 0, got {s['mlp_ratio']!r}")
        layer_scale = s['layer_scale']
        if layer_scale is not None and not isinstance(layer_scale, (int, float)):
            raise ValueError(f'GCViT: layer_scale must be None or a number, got {layer_scale!r}')
        windows = cls._as_windows(s['window_size'], "arch['window_size']")
        resolution = s['resolution']
        if not isinstance(resolution, int) or resolution < 32:
            raise ValueError(f"GCViT: arch['resolution'] (pretraining size) must be an int >= 32, got "
                             f'{resolution!r}')
        return dim, depths, heads, windows, resolution

    @staticmethod
    def _official_init(m: nn.Module) -> None:
        """Official initialisation: truncated normal (std .02) for linears and relative-position tables, LN 1/0."""
        init_linear_and_layernorm(m)
        if isinstance(m, WindowAttention):
            trunc_normal_(m.relative_position_bias_table, std=.02)

    # ------------------------------------------------------------------------------------------------- forward
    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        maps = self.forward_levels(x)
        return [getattr(self, f'norm{i}')(maps[i]).permute(0, 3, 1, 2).contiguous() for i in self.out_indices]

    def forward_levels(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Each needed level after its blocks, before its downsampler, without the new norms: (B, h_i, w_i, C_i)."""
        last = max(self.out_indices)
        x = self.patch_embed(x)  # (B, ceil(H/4), ceil(W/4), C)
        maps = {}
        for i, level in enumerate(self.levels):
            q_global = level.q_global_gen(x.permute(0, 3, 1, 2))  # once per level, shared by its global blocks
            for block in level.blocks:
                x = self.checkpoint(block, x, q_global)
            maps[i] = x
            if i == last:
                break
            x = level.downsample(x)
        return maps

    # ------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        # the per-output norms are new (not pretrained): they stay trainable
        return [self.patch_embed] + list(self.levels[:frozen_stages])

    def layer_depth(self, name: str) -> int:
        if name.startswith('patch_embed.'):
            return 0
        if name.startswith('levels.'):
            parts = name.split('.')
            i = int(parts[1])
            if parts[2] == 'blocks':
                return sum(self.depths[:i]) + int(parts[3]) + 1
            if parts[2] == 'q_global_gen':  # feeds the level's blocks
                return sum(self.depths[:i]) + 1
            return sum(self.depths[:i + 1])  # downsample: after the level's last block
        return self.num_layers + 1

    # --------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official classifier (or detector backbone) keys are this module's; drop the classifier's final ``norm``
        and ``head`` and the ``relative_position_index`` buffers (regenerated for the run-time window).
        Relative-position tables of another window are resized when they load. Idempotent."""
        return {k: v for k, v in state_dict.items()
                if not k.startswith(('head.', 'norm.')) and not k.endswith('relative_position_index')}

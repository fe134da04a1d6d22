"""PyramidTNT (Han et al., "PyramidTNT: Improved Transformer-in-Transformer Baselines with Pyramid Architecture",
arXiv 2201.00978) as a dense-prediction backbone.

Re-implementation of the classification model of huawei-noah/Efficient-AI-Backbones@f90e129
(``tnt_pytorch/pyramid_tnt.py``), with the detection adaptation the paper describes.

Pieces, as the official code computes them:

* **stem**: conv 3x3/2 + BN + ReLU (``common_conv``), then two branches on that stride-2 map:
  *words* = conv 3x3 + BN + ReLU (``inner_convs``) cut into non-overlapping 4x4 windows (16 "visual words" per 8x8
  pixel patch), *sentences* = conv 3x3/2, conv 3x3/2, conv 3x3 (+ BN + ReLU each, ``outer_convs``), one token per
  8x8 patch. Learned ``outer_pos`` (one vector per stride-8 cell, tied to the pretraining size) and ``inner_pos``
  (one per word position, size-free) are added;
* **4 stages** at strides 8/16/32/64. Between stages, *sentence merge* = LayerNorm + conv 3x3/2 pad 1 on the
  sentence map (rounds up), *word merge* = LayerNorm, regroup the words of 2x2 neighbouring sentences into an
  8x8 word map (odd sentence grids zero-padded), conv 3x3/2 pad 1 -> again 4x4 words;
* **blocks**: the word (inner) transformer exists only in block 0 of a stage, and also in block 1 when the stage has
  more than 6 blocks. Its LayerNorms normalise *all 16 words of a sentence jointly* (``num_words * inner_dim``
  features); its output is projected (LN, linear, LN) onto the sentence token. The sentence (outer) attention is
  PVT-style spatial-reduction attention: keys/values come from the sentence map average-pooled by ``sr`` (4, 2, 1,
  1 per stage) + linear + LN, and **every block of a stage adds the stage's dense learned bias** ``relative_pos``
  of shape (1, heads, Nq, Nk) - one logit per (query cell, key cell) pair of the pretraining grids;
* LayerNorm eps 1e-5 everywhere; inputs normalised with mean = std = 0.5 (not ImageNet's).

Detection adaptation (paper, Sec. 4.3): each stage output (un-normalised sentence tokens, strides 8..64) is
upsampled x2 by a stride-2 transposed conv + BN + GELU and a 3x3 conv + BN + GELU (the shared
:class:`~mmvit_backbones.models.layers.DoubleResolution`), giving strides 4/8/16/32 with the stage's channels.
These adapters are new (not in ImageNet checkpoints). ``native_strides=True`` returns the stage outputs themselves
(strides 8/16/32/64), as the official model computes them.

Any input size. The official stem needs H, W multiples of 8 and its ``relative_pos`` shapes only fit sizes whose
stride-8 grid pools evenly (multiples of 64 in practice). Here the image is zero-padded at the bottom/right to a
multiple of ``pad_size_divisor`` (32 for the official ``sr`` ratios: the smallest size at which every spatial
reduction pools whole ``sr x sr`` blocks, so the pooled key grid is exactly query grid / ``sr`` as at pretraining;
mmdet already pads to 32, so detectors see no extra padding). Merges round up like the official ones; every output
is cropped back to ``ceil(H / stride) x ceil(W / stride)``. For every size the official model can run, no padding
happens and the computation is the official one.

Resolution-dependent parameters, resized to the actual token grids:

* ``outer_pos`` (1, Hp*Wp, C) lives on the stride-8 grid of the pretraining image: bicubic interpolation
  (``align_corners=False``) of that grid to the stage-0 grid (:func:`resize_grid_embed`);
* ``stages.i.relative_pos`` (1, heads, Hq*Wq, Hk*Wk) is a function of a query cell and a key cell, i.e. a 4-D table
  over (query grid) x (pooled key grid). It is resized by tensor-product bicubic interpolation (``align_corners=False``)
  over both grids (:func:`resize_dense_bias`: first every query row as an image over the key grid, then every key
  column as an image over the query grid). The grids are derived the way the official code builds them: query grid
  = stride-8 grid halved (rounding up) per stage, key grid = ``floor(query / sr)`` (``AvgPool2d(sr, sr)``), e.g.
  Ti@192: 24x24 -> 6x6, 12x12 -> 6x6, 6x6 -> 6x6, 3x3 -> 3x3 (the official shapes (576, 36), (144, 36), (36, 36),
  (9, 9)); at run time the same rule is applied to the padded input.

Both are resized once per forward per stage (all blocks of a stage share the stage's bias), cached per input size
by :class:`SizeCache` when no gradient flows; checkpoints made at another resolution are resized at load time
(``load_state_dict`` pre-hook) to the model's ``pretrain_img_size``, with the same functions.
"""
import math
import re
from functools import partial
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import (
    DoubleResolution,
    Mlp,
    Size2d,
    SizeCache,
    attention,
    channels_last_conv_weights,
    init_conv_fan_out,
    init_linear_and_layernorm,
    resize_dense_bias,
    resize_grid_embed,
    share_bias_gradient,
    tokens_to_map,
)
from ..layers.traceable import is_exporting, pad_to_multiple
from .base import HALF, OfficialWeights, PyramidBackbone

WORD_GRID = 4  # the stem cuts each 8x8-pixel patch (4x4 cells of the stride-2 map) into 4x4 words
NUM_WORDS = WORD_GRID * WORD_GRID
STEM_STRIDE = 8


def _pair(size: Union[int, Sequence[int]], name: str) -> Size2d:
    if isinstance(size, int):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and s >= STEM_STRIDE for s in size)):
        raise ValueError(f'PyramidTNT: {name} must be an int or an (H, W) pair of ints >= {STEM_STRIDE}, '
                         f'got {size!r}')
    return int(size[0]), int(size[1])


def _sdpa_bias_layout(bias: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """The same values, stored the way SDPA reads an additive bias without copying it in every block.

    CPU: contiguous (the resized bias is a transposed view, and CPU attention makes a contiguous copy of a strided
    mask on each call, in every block, at detection sizes a large share of the forward). CUDA: a row stride that is a
    multiple of 16, since the memory-efficient kernel needs strides aligned to 8 or 16 and otherwise pads a copy on
    every call; pooled key counts rarely are (25 x 42 = 1050).
    """
    pad = -bias.shape[-1] % multiple
    if not bias.is_cuda:
        return bias.contiguous()
    if not pad:
        return bias
    return F.pad(bias, (0, pad))[..., :bias.shape[-1]]


@torch.compiler.disable
def _resized_attention_bias(relative_pos: torch.Tensor, ref_query_hw: Size2d, ref_key_hw: Size2d, query_hw: Size2d,
                            key_hw: Size2d) -> torch.Tensor:
    """``relative_pos`` resized to the actual grids, in SDPA's layout. Outside any ``torch.compile`` graph (a graph
    break): traced with symbolic sizes, the two bicubic passes over both grids build size expressions that dynamo
    does not finish simplifying in any practical time. Eagerly it is two small matrix products per input size;
    autograd connects it to the graph as usual."""
    return _sdpa_bias_layout(resize_dense_bias(relative_pos, ref_query_hw, ref_key_hw, query_hw, key_hw))


def infer_grid(num_cells: int, like: Size2d) -> Size2d:
    """The (H, W) grid with ``num_cells`` cells stored in a checkpoint tensor: ``like`` if it fits, else square,
    else the factorisation closest to ``like``'s aspect ratio (checkpoints only store the flattened length)."""
    if like[0] * like[1] == num_cells:
        return tuple(like)
    side = math.isqrt(num_cells)
    if side * side == num_cells:
        return side, side
    target = math.log(like[0] / like[1])
    pairs = [(h, num_cells // h) for h in range(1, num_cells + 1) if num_cells % h == 0]
    return min(pairs, key=lambda p: abs(math.log(p[0] / p[1]) - target))


# ------------------------------------------------------------------------------------------------------ building blocks
class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys/values come from the token map average-pooled by ``sr_ratio`` (+ linear + LN).

    With ``sr_ratio = 1`` it is plain multi-head attention (used by the word transformer too).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, sr_ratio: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'PyramidTNT: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.pool = nn.AvgPool2d(sr_ratio, stride=sr_ratio)
            self.linear = nn.Linear(dim, dim)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, hw: Optional[Size2d] = None,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, C) tokens on an ``hw`` grid; bias: (1, heads, N, Nk) added to the logits. Returns (B, N, C)."""
        b, n, c = x.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        q = self.q(x).reshape(b, n, heads, head_dim).transpose(1, 2)  # (B, heads, N, d)
        if self.sr_ratio > 1:
            x = self.pool(tokens_to_map(x, hw)).flatten(2).transpose(1, 2)  # (B, Nk, C), Nk = floor-pooled grid
            x = self.norm(self.linear(x))
        k, v = self.kv(x).reshape(b, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, Nk, d)
        out = attention(q, k, v, bias)  # scale head_dim ** -0.5 as in the official code
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TNTBlock(nn.Module):
    """One PyramidTNT block: optional word (inner) transformer feeding the sentence token, then the sentence (outer)
    transformer with spatial-reduction attention and the stage's dense bias."""

    def __init__(self, outer_dim: int, inner_dim: int, outer_heads: int, inner_heads: int, mlp_ratio: float,
                 qkv_bias: bool, sr_ratio: int, drop_path: float):
        super().__init__()
        self.has_inner = inner_dim > 0
        if self.has_inner:
            sentence_dim = NUM_WORDS * inner_dim  # the inner LayerNorms see all words of a sentence at once
            self.inner_norm1 = nn.LayerNorm(sentence_dim)
            self.inner_attn = SpatialReductionAttention(inner_dim, inner_heads, qkv_bias)
            self.inner_norm2 = nn.LayerNorm(sentence_dim)
            self.inner_mlp = Mlp(inner_dim, int(inner_dim * mlp_ratio))
            self.proj_norm1 = nn.LayerNorm(sentence_dim)
            self.proj = nn.Linear(sentence_dim, outer_dim, bias=False)
            self.proj_norm2 = nn.LayerNorm(outer_dim)
        self.outer_norm1 = nn.LayerNorm(outer_dim)
        self.outer_attn = SpatialReductionAttention(outer_dim, outer_heads, qkv_bias, sr_ratio)
        self.outer_norm2 = nn.LayerNorm(outer_dim)
        self.outer_mlp = Mlp(outer_dim, int(outer_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @staticmethod
    def _sentence_norm(norm: nn.LayerNorm, words: torch.Tensor, b: int, n: int) -> torch.Tensor:
        """LayerNorm over the 16 words of each sentence jointly: (B*N, 16, c) -> (B*N, 16, c)."""
        return norm(words.reshape(b, n, -1)).reshape_as(words)

    def forward(self, words: torch.Tensor, sentences: torch.Tensor, bias: torch.Tensor,
                hw: Size2d) -> Tuple[torch.Tensor, torch.Tensor]:
        """words: (B*N, 16, c); sentences: (B, N, C) on the ``hw`` grid; bias: (1, heads, N, Nk)."""
        b, n, _ = sentences.shape
        if self.has_inner:
            words = words + self.drop_path(self.inner_attn(self._sentence_norm(self.inner_norm1, words, b, n)))
            words = words + self.drop_path(self.inner_mlp(self._sentence_norm(self.inner_norm2, words, b, n)))
            sentences = sentences + self.proj_norm2(self.proj(self.proj_norm1(words.reshape(b, n, -1))))
        sentences = sentences + self.drop_path(self.outer_attn(self.outer_norm1(sentences), hw, bias))
        sentences = sentences + self.drop_path(self.outer_mlp(self.outer_norm2(sentences)))
        return words, sentences


class Stage(nn.Module):
    """The blocks of one stage and their shared dense attention bias ``relative_pos`` (1, heads, Nq, Nk), stored for
    the query grid ``query_hw`` and pooled key grid ``key_hw`` of the pretraining size."""

    def __init__(self, depth: int, outer_dim: int, inner_dim: int, outer_heads: int, inner_heads: int,
                 mlp_ratio: float, qkv_bias: bool, sr_ratio: int, drop_paths: Sequence[float],
                 query_hw: Size2d, key_hw: Size2d):
        super().__init__()
        # official rule: words are processed in block 0, and in block 1 too when the stage has more than 6 blocks
        self.blocks = nn.ModuleList([
            TNTBlock(outer_dim, inner_dim if j == 0 or (j == 1 and depth > 6) else 0, outer_heads, inner_heads,
                     mlp_ratio, qkv_bias, sr_ratio, drop_paths[j]) for j in range(depth)])
        self.sr_ratio = sr_ratio
        self.query_hw, self.key_hw = tuple(query_hw), tuple(key_hw)
        self.relative_pos = nn.Parameter(
            torch.randn(1, outer_heads, query_hw[0] * query_hw[1], key_hw[0] * key_hw[1]))
        # few entries: at detection sizes a stage-0 bias (heads x queries x pooled keys) is hundreds of MB
        self._bias_cache = SizeCache(max_entries=2)

    def key_grid(self, query_hw: Size2d) -> Size2d:
        """The grid of keys after ``AvgPool2d(sr, stride=sr)`` (floor), as the official attention computes it."""
        return query_hw[0] // self.sr_ratio, query_hw[1] // self.sr_ratio

    def attention_bias(self, query_hw: Size2d) -> torch.Tensor:
        """``relative_pos`` on the actual grids: (1, heads, Hq*Wq, Hk*Wk); once per forward, cached at inference."""
        query_hw = tuple(query_hw)
        key_hw = self.key_grid(query_hw)
        return self._bias_cache.get((query_hw, key_hw), [self.relative_pos], lambda: _resized_attention_bias(
            self.relative_pos, self.query_hw, self.key_hw, query_hw, key_hw))


class Stem(nn.Module):
    """Image -> 16 words per 8x8 patch (B*N, 16, c) and one sentence token per patch (B, N, C)."""

    def __init__(self, in_channels: int, outer_dim: int, inner_dim: int):
        super().__init__()
        self.inner_dim = inner_dim
        self.common_conv = nn.Sequential(
            nn.Conv2d(in_channels, inner_dim * 2, 3, stride=2, padding=1), nn.BatchNorm2d(inner_dim * 2),
            nn.ReLU(inplace=True))
        self.inner_convs = nn.Sequential(
            nn.Conv2d(inner_dim * 2, inner_dim, 3, stride=1, padding=1), nn.BatchNorm2d(inner_dim), nn.ReLU())
        self.outer_convs = nn.Sequential(
            nn.Conv2d(inner_dim * 2, inner_dim * 4, 3, stride=2, padding=1), nn.BatchNorm2d(inner_dim * 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner_dim * 4, inner_dim * 8, 3, stride=2, padding=1), nn.BatchNorm2d(inner_dim * 8),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner_dim * 8, outer_dim, 3, stride=1, padding=1), nn.BatchNorm2d(outer_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Size2d]:
        """x: (B, C_in, H, W) with H, W multiples of 8."""
        b = x.shape[0]
        x = self.common_conv(x)  # (B, 2c, H/2, W/2)
        words = self.inner_convs(x)  # (B, c, H/2, W/2)
        c, h2, w2 = words.shape[1:]
        h, w = h2 // WORD_GRID, w2 // WORD_GRID
        # (B, c, h, 4, w, 4) -> (B, h, w, 4, 4, c): the words of a patch in row-major order (= nn.Unfold(4, stride=4))
        words = words.reshape(b, c, h, WORD_GRID, w, WORD_GRID).permute(0, 2, 4, 3, 5, 1)
        words = words.reshape(b * h * w, NUM_WORDS, c)
        sentences = self.outer_convs(x)  # (B, C, H/8, W/8)
        return words, sentences.flatten(2).transpose(1, 2), (h, w)


class WordMerge(nn.Module):
    """LayerNorm, then the words of 2x2 neighbouring sentences form an 8x8 word map, conv 3x3/2 -> 4x4 words."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim_in)
        self.conv = nn.Conv2d(dim_in, dim_out, 3, stride=2, padding=1)

    def forward(self, words: torch.Tensor, hw: Size2d) -> torch.Tensor:
        """words: (B*H*W, 16, c) for an ``hw`` sentence grid -> (B*ceil(H/2)*ceil(W/2), 16, c_out)."""
        h, w = hw
        c = words.shape[-1]
        x = self.norm(words).reshape(-1, h, w, WORD_GRID, WORD_GRID, c)
        if is_exporting() or h % 2 or w % 2:  # odd grids: zero sentences at the bottom/right (official "padding
            # to fit (1333, 800)"); a traced grid always takes this path (padding by 0 when even)
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # (B, h/2, 2, w/2, 2, 4, 4, c) -> (B, h/2, w/2, 2, 4, 2, 4, c): each sentence pair's words side by side,
        # gathered channels-last (one copy) so that the NHWC conv reads the map as it is and its output's token view
        # (B*h/2*w/2, 16, c_out) is contiguous
        x = x.reshape(-1, h // 2, 2, w // 2, 2, WORD_GRID, WORD_GRID, c).permute(0, 1, 3, 2, 5, 4, 6, 7)
        x = x.reshape(-1, 2 * WORD_GRID, 2 * WORD_GRID, c).permute(0, 3, 1, 2)
        x = self.conv(x)  # (B*h/2*w/2, c_out, 4, 4)
        return x.flatten(2).transpose(1, 2)


class SentenceMerge(nn.Module):
    """LayerNorm + conv 3x3/2 pad 1 on the sentence map (the grid is halved, rounding up)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim_in)
        self.conv = nn.Conv2d(dim_in, dim_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, hw: Size2d) -> Tuple[torch.Tensor, Size2d]:
        x = self.conv(tokens_to_map(self.norm(x), hw))
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


# ------------------------------------------------------------------------------------------------------------ backbone
_LICENSE = 'not stated (huawei-noah/Efficient-AI-Backbones)'


@register_model
class PyramidTNT(PyramidBackbone):
    """PyramidTNT backbone for MMDetection / MMSegmentation (see the module docstring for the architecture).

    Args:
        arch: ``'ti'``, ``'s'``, ``'m'``, ``'b'`` (also ``'tiny'``... and the official names such as
            ``'ptnt_s_patch16_256'``) or a dict with ``depths``, ``outer_dims``, ``inner_dims``, ``outer_heads``,
            ``inner_heads`` (4 entries each) and optionally ``mlp_ratio`` (4), ``sr_ratios`` ((4, 2, 1, 1)),
            ``qkv_bias`` (False), ``pretrain_img_size`` (256).
        pretrain_img_size: image size (int or (H, W)) at which ``outer_pos`` and ``relative_pos`` are stored, i.e. the
            resolution of the checkpoint to load (a checkpoint made at another size is resized on load); their grids
            are those of such an image padded to ``pad_size_divisor``. Defaults to the variant's training resolution:
            192 for Ti, 256 for S/M/B.
        native_strides: return the stage outputs at strides 8/16/32/64 (sizes ``ceil(H / 2**(i+3))``) instead of the
            x2-upsampled strides 4/8/16/32 maps of the paper's detection adaptation.
        out_indices: levels to return (0: stride 4, or 8 with ``native_strides``).
        frozen_stages: -1 nothing; 0 the stem and position embeddings; i > 0 also stages 0..i-1 and their merges.
        norm_eval: keep the stem's BatchNorm (pretrained statistics) in eval mode while training. The BN layers of
            the new upsampling adapters have no pretrained statistics and keep training.
        with_cp: activation checkpointing of every block.
        drop_path_rate: stochastic depth, increasing linearly over all blocks (official rule).
    """

    arch_zoo = {
        'ti': dict(depths=(2, 6, 3, 2), outer_dims=(80, 160, 320, 320), inner_dims=(5, 10, 20, 20),
                   outer_heads=(2, 4, 8, 8), inner_heads=(1, 2, 4, 4), pretrain_img_size=192),
        's': dict(depths=(2, 8, 4, 2), outer_dims=(128, 256, 512, 512), inner_dims=(8, 16, 32, 32),
                  outer_heads=(4, 8, 16, 16), inner_heads=(2, 4, 8, 8)),
        'm': dict(depths=(2, 8, 6, 2), outer_dims=(192, 384, 768, 768), inner_dims=(12, 24, 48, 48),
                  outer_heads=(4, 8, 16, 16), inner_heads=(2, 4, 8, 8)),
        'b': dict(depths=(2, 10, 6, 2), outer_dims=(256, 512, 1024, 1024), inner_dims=(16, 32, 64, 64),
                  outer_heads=(4, 8, 16, 16), inner_heads=(2, 4, 8, 8)),
    }
    arch_aliases = {'tiny': 'ti', 'ptnt_ti_patch16_192': 'ti', 'small': 's', 'ptnt_s_patch16_256': 's',
                    'medium': 'm', 'ptnt_m_patch16_256': 'm', 'base': 'b', 'ptnt_b_patch16_256': 'b'}
    essential_keys = ('depths', 'outer_dims', 'inner_dims', 'outer_heads', 'inner_heads')
    arch_defaults = dict(sr_ratios=(4, 2, 1, 1), mlp_ratio=4.0, qkv_bias=False, pretrain_img_size=256)
    official_weights = {
        'ti': OfficialWeights('ti', 'https://pan.baidu.com/s/1xm3DSGcAJbvFQm4jmDAlnQ', _LICENSE, 75.2, 192,
                              HALF, HALF, note='BaiduDisk, password 0r5t'),
        's': OfficialWeights('s', 'https://pan.baidu.com/s/1xha8x3DTlPq9-KeC6EPPow', _LICENSE, 82.0, 256, HALF, HALF,
                             note='BaiduDisk, password v5w5'),
        'm': OfficialWeights('m', 'https://pan.baidu.com/s/1B9zkWkrUAETuiyr08ClY-w', _LICENSE, 83.5, 256, HALF, HALF,
                             note='BaiduDisk, password jqm3'),
        'b': OfficialWeights('b', 'https://pan.baidu.com/s/1tT0mxRrZQx6facYsdPBt0g', _LICENSE, 84.1, 256, HALF, HALF,
                             note='BaiduDisk, password ns4t'),
    }
    weights_note = ('Published on BaiduDisk only (table "PyramidTNT Code" in https://github.com/huawei-noah/'
                    'Efficient-AI-Backbones/tree/master/tnt_pytorch); the downloaded .pth.tar loads as it is.')
    new_param_prefixes = ('upsamples.', )

    def __init__(self, arch: Union[str, dict] = 's', in_channels: int = 3,
                 pretrain_img_size: Optional[Union[int, Sequence[int]]] = None, native_strides: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, drop_path_rate: float = 0.0,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        s = self._check_settings(self.arch_settings)
        depths, outer_dims, inner_dims = s['depths'], s['outer_dims'], s['inner_dims']
        self.check_drop_path_rate(drop_path_rate)
        self.depths, self.sr_ratios = depths, s['sr_ratios']
        self.native_strides = bool(native_strides)
        if self.native_strides:
            self.level_strides = (8, 16, 32, 64)
        self.num_layers = sum(depths)
        self.out_channels: Tuple[int, ...] = tuple(outer_dims)
        # pad so that every spatial reduction pools whole sr x sr blocks (stage i grid = H / (8 * 2**i)): 32 by default
        self.pad_size_divisor = STEM_STRIDE * max([1] + [2 ** i * sr for i, sr in enumerate(self.sr_ratios) if sr > 1])
        self.pretrain_img_size = _pair(pretrain_img_size if pretrain_img_size is not None
                                       else s['pretrain_img_size'], 'pretrain_img_size')
        self.pretrain_grid = self.token_grid(*self.pretrain_img_size)

        self.patch_embed = Stem(in_channels, outer_dims[0], inner_dims[0])
        self.outer_pos = nn.Parameter(torch.zeros(1, self.pretrain_grid[0] * self.pretrain_grid[1], outer_dims[0]))
        self.inner_pos = nn.Parameter(torch.zeros(1, NUM_WORDS, inner_dims[0]))
        self._pos_cache = SizeCache()

        drop_paths = [drop_path_rate * j / max(self.num_layers - 1, 1) for j in range(self.num_layers)]  # linspace
        self.word_merges = nn.ModuleList(WordMerge(inner_dims[i - 1], inner_dims[i]) for i in range(1, 4))
        self.sentence_merges = nn.ModuleList(SentenceMerge(outer_dims[i - 1], outer_dims[i]) for i in range(1, 4))
        self.stages = nn.ModuleList()
        for i, (query_hw, key_hw) in enumerate(self.stage_grids(self.pretrain_grid)):
            start = sum(depths[:i])
            self.stages.append(Stage(
                depths[i], outer_dims[i], inner_dims[i], s['outer_heads'][i], s['inner_heads'][i], s['mlp_ratio'],
                s['qkv_bias'], self.sr_ratios[i], drop_paths[start:start + depths[i]], query_hw, key_hw))
        # the paper's detection adaptation, only for the levels returned (no unused parameters under DDP)
        self.upsamples = nn.ModuleDict() if self.native_strides else nn.ModuleDict(
            {str(i): DoubleResolution(outer_dims[i]) for i in self.out_indices})
        self._upsample_keys = tuple(str(i) for i in range(len(self.stages)))

        self._init_parameters()
        self.register_load_state_dict_pre_hook(_resize_pretrained_tables)
        # the convs (merges, stem, adapters) see token maps through channels-last views: NHWC weights, no copies
        channels_last_conv_weights(self)

    # ------------------------------------------------------------------------------------------------------ settings
    @staticmethod
    def _check_settings(s: dict) -> dict:
        out = dict(s)
        for key in PyramidTNT.essential_keys:
            value = s[key]
            if (not isinstance(value, (list, tuple)) or len(value) != 4
                    or not all(isinstance(v, int) and v > 0 for v in value)):
                raise ValueError(f'PyramidTNT: arch[{key!r}] must be 4 positive ints (one per stage), got {value!r}')
            out[key] = tuple(value)
        out['sr_ratios'] = tuple(s['sr_ratios'])
        if len(out['sr_ratios']) != 4 or not all(isinstance(v, int) and v > 0 for v in out['sr_ratios']):
            raise ValueError(f'PyramidTNT: arch["sr_ratios"] must be 4 positive ints, got {s["sr_ratios"]!r}')
        for dims, heads in (('outer_dims', 'outer_heads'), ('inner_dims', 'inner_heads')):
            for i, (d, h) in enumerate(zip(out[dims], out[heads])):
                if d % h:
                    raise ValueError(f'PyramidTNT: stage {i}: {dims} {d} is not divisible by {heads} {h}')
        out['mlp_ratio'] = s['mlp_ratio']
        if not isinstance(out['mlp_ratio'], (int, float)) or out['mlp_ratio'] <= 0:
            raise ValueError(f'PyramidTNT: arch["mlp_ratio"] must be positive, got {out["mlp_ratio"]!r}')
        out['qkv_bias'] = bool(s['qkv_bias'])
        return out

    def token_grid(self, h: int, w: int) -> Size2d:
        """Stride-8 sentence grid of an ``h x w`` image after padding to ``pad_size_divisor``."""
        div = self.pad_size_divisor
        return math.ceil(h / div) * div // STEM_STRIDE, math.ceil(w / div) * div // STEM_STRIDE

    def stage_grids(self, grid: Size2d) -> List[Tuple[Size2d, Size2d]]:
        """(query grid, pooled key grid) of each stage for a stage-0 grid: halved rounding up, keys floor(q / sr)."""
        out, (h, w) = [], grid
        for i, sr in enumerate(self.sr_ratios):
            if i:
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            out.append(((h, w), (h // sr, w // sr)))
        return out

    def _init_parameters(self) -> None:
        """The official initialisation (used when training from scratch; checkpoints overwrite it)."""
        for m in self.modules():
            init_linear_and_layernorm(m)
            init_conv_fan_out(m)
        trunc_normal_(self.outer_pos, std=0.02)
        trunc_normal_(self.inner_pos, std=0.02)  # relative_pos keeps its official N(0, 1) draw

    # ------------------------------------------------------------------------------------------------------- forward
    def outer_pos_for(self, grid: Size2d) -> torch.Tensor:
        """``outer_pos`` on the actual stage-0 grid (bicubic), cached per size at inference."""
        grid = tuple(grid)
        return self._pos_cache.get(grid, [self.outer_pos], lambda: resize_grid_embed(
            self.outer_pos, self.pretrain_grid, grid))

    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        h, w = x.shape[-2:]
        div = self.pad_size_divisor
        # zero padding at the bottom/right (no-op for multiples of div)
        x = F.pad(x, (0, pad_to_multiple(w, div), 0, pad_to_multiple(h, div)))
        words, sentences, grid = self.patch_embed(x)  # (B*N, 16, c), (B, N, C), stride-8 grid
        words = words + self.inner_pos
        sentences = sentences + self.outer_pos_for(grid)
        outs = {}
        for i, stage in enumerate(self.stages):
            if i:
                words = self.word_merges[i - 1](words, grid)
                sentences, grid = self.sentence_merges[i - 1](sentences, grid)
            bias = share_bias_gradient(stage.attention_bias(grid))  # once per stage, shared by its blocks
            for block in stage.blocks:
                words, sentences = self.checkpoint(partial(block, hw=grid), words, sentences, bias)
            if i in self.out_indices:
                outs[i] = self._output(i, tokens_to_map(sentences, grid))
        return [outs[i] for i in self.out_indices]

    def _output(self, i: int, feature: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` map (stride 2**(i+3) of the padded input) -> level ``i`` (upsampled x2 unless native)."""
        if self.native_strides:
            return feature
        # (the key precomputed: torch.compile's dynamo cannot trace str() of an int and breaks the graph there)
        return self.upsamples[self._upsample_keys[i]](feature)

    # ------------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[Union[nn.Module, nn.Parameter]]:
        yield from (self.patch_embed, self.outer_pos, self.inner_pos)
        for i in range(frozen_stages):
            if i:
                yield from (self.word_merges[i - 1], self.sentence_merges[i - 1])
            yield self.stages[i]

    def layer_depth(self, name: str) -> int:
        """0: stem and position embeddings; block j of stage i: sum(depths[:i]) + j + 1; a stage's bias: its first
        block; a merge: the last block before it (like mmpretrain's Swin downsample); the rest: num_layers + 1."""
        if name.startswith(('patch_embed.', 'outer_pos', 'inner_pos')):
            return 0
        match = re.match(r'stages\.(\d+)\.(?:blocks\.(\d+)\.|relative_pos)', name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2) or 0)
            return sum(self.depths[:stage]) + block + 1
        match = re.match(r'(?:word|sentence)_merges\.(\d+)\.', name)
        if match:
            return sum(self.depths[:int(match.group(1)) + 1])
        return self.num_layers + 1

    # --------------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official PyramidTNT keys -> this module's: the merges' one-conv ``nn.Sequential`` (``conv.0.``) becomes a
        plain ``conv.``; the classifier (``norm``, ``head``) is dropped. Everything else keeps its official name.
        Idempotent; resolution-dependent tensors are resized by the load pre-hook, not here."""
        converted = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'norm.')):
                continue
            converted[re.sub(r'^((?:word|sentence)_merges\.\d+\.conv)\.0\.', r'\1.', key)] = value
        return converted


def _resize_pretrained_tables(module: PyramidTNT, state_dict: Dict[str, torch.Tensor], prefix: str,
                              *args) -> None:
    """Load-time pre-hook: ``outer_pos`` and every ``relative_pos`` of a checkpoint made at another resolution are
    resized to the model's ``pretrain_img_size`` grids with the same interpolation as at run time.

    The checkpoint's grids are read from its ``outer_pos`` length (square unless the model's own aspect ratio fits)
    and the official stage rule; a ``relative_pos`` that does not fit that rule gets its grids from its own lengths.
    """
    source_grids = None
    pos_key = prefix + 'outer_pos'
    pos = state_dict.get(pos_key)
    if isinstance(pos, torch.Tensor) and pos.dim() == 3 and pos.shape[2] == module.outer_pos.shape[2]:
        source_grid = infer_grid(pos.shape[1], module.pretrain_grid)
        source_grids = module.stage_grids(source_grid)
        if pos.shape != module.outer_pos.shape:
            state_dict[pos_key] = resize_grid_embed(pos, source_grid, module.pretrain_grid)
    for i, stage in enumerate(module.stages):
        key = f'{prefix}stages.{i}.relative_pos'
        bias = state_dict.get(key)
        own = stage.relative_pos
        if (not isinstance(bias, torch.Tensor) or bias.dim() != 4 or bias.shape[:2] != own.shape[:2]
                or bias.shape == own.shape):
            continue  # absent, same size, or another variant (reported as a shape error by load_state_dict)
        if source_grids is not None and bias.shape[2:] == (math.prod(source_grids[i][0]),
                                                           math.prod(source_grids[i][1])):
            query_hw, key_hw = source_grids[i]
        else:
            query_hw = infer_grid(bias.shape[2], stage.query_hw)
            key_hw = infer_grid(bias.shape[3], stage.key_hw)
        state_dict[key] = resize_dense_bias(bias, query_hw, key_hw, stage.query_hw, stage.key_hw)

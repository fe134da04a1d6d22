"""TNT (Han et al., "Transformer in Transformer", NeurIPS 2021) as a stride 4/8/16/32 pyramid backbone.

Architecture (official ``huawei-noah/Efficient-AI-Backbones`` ``tnt_pytorch/tnt.py``):

* **Words**: the image is cut into 16x16 patches ("sentences") and a 7x7 stride-4 pad-3 convolution runs on *each
  patch separately*, i.e. with zero padding at every patch border (not over the whole image as in the older
  timm/mmpretrain port): 4x4 = 16 words of ``inner_dims`` channels per patch, plus the learnt ``inner_pos``
  (one entry per word position, resolution independent).
* **Sentences**: the 16 words of a patch, concatenated, go through LayerNorm -> Linear -> LayerNorm to one token of
  ``embed_dims``; a class token is prepended and the learnt ``outer_pos`` (class + 14x14 grid at 224) added.
* **Blocks**: an inner transformer block over the 16 words of each patch (attention never crosses patches), the
  words projected again (LN -> bias-free Linear -> LN) and *added* to their sentence token, then an outer transformer
  block over all sentence tokens. Both transformers are plain pre-norm blocks with separate bias-free ``qk`` and
  ``v`` projections, scale ``head_dim ** -0.5``, MLP ratio 4, LayerNorm eps 1e-5; a final LayerNorm follows.
  Normalisation of the input images: mean = std = 0.5.

Implementation notes (same maths, faster):

* The per-patch convolution is one ``conv2d`` over the batch of patches ``(B*N, 3, 16, 16)`` that a reshape of the
  image gives (one copy of the image, no ``nn.Unfold``): conv2d's own zero padding of each 16x16 image *is* the
  official padding at every patch border.
* ``qk`` and ``v`` are fused into one ``qkv`` projection when a checkpoint is converted (``qkv = [qk; v]``), so the
  inner and outer transformers are the shared :class:`~mmvit_backbones.models.layers.ViTBlock` and attention runs
  through the shared SDPA core. The words of all patches are one batch of 16-token sequences.
* The official block adds the word projection to ``outer_tokens[:, 1:]`` in place; here the sum is built out of
  place (autograd- and checkpointing-safe). The never used ``outer_tokens`` parameter is dropped on load.

Dense-prediction adaptation (the official model is a 224x224 classifier with hard-coded sizes):

* **Any input size**: the image is zero-padded at the bottom/right to a multiple of 16, ``outer_pos`` is resized
  bicubically to the actual patch grid (class entry kept; cached per size at inference) and the outputs are cropped
  to ``ceil(H / stride)``. Checkpoints made at another resolution are resized to ``pretrain_img_size`` on load.
* **Pyramid**: ViTDet's simple feature pyramid (shared :class:`SimpleFeaturePyramid`) from the stride-16 sentence
  map of ``feature_block`` (default the last block, after the final norm). The default builds the stride-4/8 levels
  from that map by deconvolution: every sentence token has attended to the whole image, whereas a word only ever sees
  its own 16x16 patch (the inner attention never crosses patches) and has only ``inner_dims`` (24/40) channels. With
  ``use_word_fine_maps=True`` the fine levels come from TNT's own words instead (the T2T-ViT ``use_t2t_fine_maps``
  idea): level 0 is the stride-4 word map (word (r, c) of patch (i, j) at pixel (4i+r, 4j+c)), level 1 the same
  map space-to-depth 2x2 (stride 8, ``4 * inner_dims`` channels, nothing averaged away), each projected by 1x1 conv
  + LN. This keeps the finest detail the backbone has (4x4-pixel cells) at the cost of global context there.
* **Windowed attention** (optional, ViTDet-style) in the outer blocks listed in ``window_block_indexes``; the class
  token stays global. Weights are unchanged.
* **Stages** for ``frozen_stages``: 0 is the stem (word/sentence embeddings, class token, position tables); stages
  1..4 are the four quarters of the blocks; the final norm goes with stage 4.

Checkpoints (through ``init_cfg`` and :meth:`TNT.convert_checkpoint`): the official flat files
(``tnt_s_81.5.pth.tar``, ``tnt_b_82.9.pth.tar``), the same wrapped in ``state_dict`` / ``state_dict_ema`` /
``model``, and timm's renamed layout of the official model (``pixel_embed``, ``patch_pos``, ``pixel_pos`` (1, C, 4, 4),
``norm1_proj``, ``attn_in``, ... of ``tnt_{s,b}_patch16_224.in1k``). timm's *legacy* layout
(``tnt_s_legacy_patch16_224``, also mmpretrain's TNT) computes something else (conv over the whole image, other
projection) and is refused with an explanation.
"""
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import trunc_normal_

from ...checkpoint import CheckpointError, StateDict
from ...registry import register_model
from ..layers import (
    SimpleFeaturePyramid,
    Size2d,
    ViTBlock,
    init_linear_and_layernorm,
    tokens_to_map,
)
from .base import HALF, OfficialWeights
from .single_scale import SingleScaleBackbone

PATCH_SIZE = 16  # pixels per sentence (patch) side: the stride of the sentence map
WORD_STRIDE = 4  # stride of the word convolution: the stride of the word map
WORD_GRID = PATCH_SIZE // WORD_STRIDE  # 4x4 words per patch
NUM_WORDS = WORD_GRID * WORD_GRID
NORM_EPS = 1e-5  # the official nn.LayerNorm default, everywhere

_RELEASE = 'https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/tnt/'

# timm's names for the official model (timm >= 1.0.16, non-legacy TNT) -> the official names
_TIMM_BLOCK_NAMES = {'norm_in': 'inner_norm1', 'attn_in': 'inner_attn', 'norm_mlp_in': 'inner_norm2',
                     'mlp_in': 'inner_mlp', 'norm_out': 'outer_norm1', 'attn_out': 'outer_attn',
                     'norm_mlp': 'outer_norm2', 'mlp': 'outer_mlp', 'norm1_proj': 'proj_norm1',
                     'norm2_proj': 'proj_norm2'}
_TIMM_TOP_NAMES = {'pixel_embed.': 'patch_embed.', 'norm1_proj.': 'proj_norm1.', 'norm2_proj.': 'proj_norm2.',
                   'patch_pos': 'outer_pos'}
# official block part -> ours: the inner/outer transformers are ViTBlocks (norm1, attn, norm2, mlp)
_OFFICIAL_BLOCK_PARTS = {'inner_norm1': 'inner.norm1', 'inner_attn': 'inner.attn', 'inner_norm2': 'inner.norm2',
                         'inner_mlp': 'inner.mlp', 'outer_norm1': 'outer.norm1', 'outer_attn': 'outer.attn',
                         'outer_norm2': 'outer.norm2', 'outer_mlp': 'outer.mlp'}


def words_to_map(words: torch.Tensor, grid: Size2d) -> torch.Tensor:
    """(B*h*w, 16, c) words -> the stride-4 word map (B, c, 4h, 4w): word (r, c) of patch (i, j) at (4i+r, 4j+c)."""
    (h, w), channels = grid, words.shape[-1]
    words = words.reshape(-1, h, w, WORD_GRID, WORD_GRID, channels)
    return words.permute(0, 5, 1, 3, 2, 4).reshape(-1, channels, h * WORD_GRID, w * WORD_GRID)


def space_to_depth2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 2h, 2w) -> (B, 4C, h, w), channel ``4c + 2dy + dx`` (as ``F.pixel_unshuffle(x, 2)``, which mis-shapes
    an empty batch)."""
    b, channels, height, width = x.shape
    x = x.reshape(b, channels, height // 2, 2, width // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, channels * 4, height // 2, width // 2)


class WordEmbed(nn.Module):
    """Image -> 16 words per 16x16 patch: the official 7x7/4 convolution run on every patch on its own."""

    def __init__(self, in_channels: int, inner_dims: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, inner_dims, kernel_size=7, stride=WORD_STRIDE, padding=3)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d]:
        """x: (B, C, 16h, 16w) -> words (B*h*w, 16, c) (patches row-major, words row-major), grid (h, w)."""
        b, channels, height, width = x.shape
        h, w = height // PATCH_SIZE, width // PATCH_SIZE
        # the patches as a batch of 16x16 images (B*h*w, C, 16, 16): conv2d zero-pads each one at its own border
        patches = x.reshape(b, channels, h, PATCH_SIZE, w, PATCH_SIZE).permute(0, 2, 4, 1, 3, 5)
        words = self.proj(patches.reshape(b * h * w, channels, PATCH_SIZE, PATCH_SIZE))  # (B*N, c, 4, 4)
        return words.flatten(2).transpose(1, 2), (h, w)


class SentenceProjection(nn.Module):
    """The 16 words of each patch, concatenated -> LN -> Linear -> LN: one vector per sentence."""

    def __init__(self, inner_dims: int, embed_dims: int, bias: bool):
        super().__init__()
        self.proj_norm1 = nn.LayerNorm(NUM_WORDS * inner_dims, eps=NORM_EPS)
        self.proj = nn.Linear(NUM_WORDS * inner_dims, embed_dims, bias=bias)
        self.proj_norm2 = nn.LayerNorm(embed_dims, eps=NORM_EPS)

    def forward(self, words: torch.Tensor, batch: int, num_patches: int) -> torch.Tensor:
        """(B*N, 16, c) -> (B, N, D); the sizes are explicit so that an empty batch keeps its shape."""
        sentences = words.reshape(batch, num_patches, words.shape[1] * words.shape[2])
        return self.proj_norm2(self.proj(self.proj_norm1(sentences)))


class TNTBlock(nn.Module):
    """Inner transformer on the words of each patch, words added to their sentence, outer transformer on sentences.

    Drop path acts on the attention and MLP branches of both transformers, not on the word-to-sentence projection
    (as in the official block).
    """

    def __init__(self, embed_dims: int, inner_dims: int, num_heads: int, inner_heads: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, window_size: int = 0):
        super().__init__()
        self.inner = ViTBlock(inner_dims, inner_heads, mlp_ratio, qkv_bias, drop_path, norm_eps=NORM_EPS,
                              num_extra_tokens=0)
        self.to_sentence = SentenceProjection(inner_dims, embed_dims, bias=False)
        self.outer = ViTBlock(embed_dims, num_heads, mlp_ratio, qkv_bias, drop_path, norm_eps=NORM_EPS,
                              window_size=window_size)

    def forward(self, words: torch.Tensor, sentences: torch.Tensor,
                grid: Size2d) -> Tuple[torch.Tensor, torch.Tensor]:
        """words: (B*N, 16, c); sentences: (B, 1 + N, D) with the class token first, N = h*w of ``grid``."""
        words = self.inner(words, (WORD_GRID, WORD_GRID))
        update = self.to_sentence(words, sentences.shape[0], grid[0] * grid[1])  # (B, N, D); none for the class
        sentences = torch.cat([sentences[:, :1], sentences[:, 1:] + update], dim=1)
        return words, self.outer(sentences, grid)


@register_model
class TNT(SingleScaleBackbone):
    """TNT backbone with ViTDet's simple feature pyramid (see the module docstring).

    Args:
        arch: ``'s'`` / ``'b'`` (official ``tnt_s_patch16_224`` / ``tnt_b_patch16_224``) or a dict with
            ``embed_dims``, ``inner_dims``, ``depth``, ``num_heads``, ``inner_heads`` (optional ``mlp_ratio`` 4,
            ``qkv_bias`` False). Patches are 16x16 with 4x4 words, as in every released model.
        pretrain_img_size: resolution (int or (H, W), multiples of 16) of the checkpoint's ``outer_pos`` (224).
        feature_block: the block whose sentence map feeds the pyramid (negative counts from the end); later blocks
            are not built.
        final_norm: apply the final LayerNorm to that map.
        use_word_fine_maps: levels 0/1 from the word map of ``feature_block`` (stride 4, and stride 8 by 2x2
            space-to-depth) instead of deconvolutions of the sentence map.
        window_size / window_block_indexes: ViTDet-style windowed attention in the listed outer blocks.
        drop_path_rate: stochastic depth, linear over the blocks (official rule).
        frozen_stages: -1 none; 0 the stem (embeddings, class token, position tables); i the stem and the first i
            quarters of the blocks (4 includes the final norm).
        with_cp: activation checkpointing of every block.
    """

    arch_zoo = {
        's': dict(embed_dims=384, inner_dims=24, depth=12, num_heads=6, inner_heads=4),
        'b': dict(embed_dims=640, inner_dims=40, depth=12, num_heads=10, inner_heads=4),
    }
    arch_aliases = {'small': 's', 'tnt_s_patch16_224': 's', 'base': 'b', 'tnt_b_patch16_224': 'b'}
    essential_keys = ('embed_dims', 'inner_dims', 'depth', 'num_heads', 'inner_heads')
    arch_defaults = dict(mlp_ratio=4.0, qkv_bias=False)
    official_weights = {
        's': OfficialWeights('s', _RELEASE + 'tnt_s_81.5.pth.tar', 'not stated (huawei-noah/Efficient-AI-Backbones)',
                             81.5, mean=HALF, std=HALF),
        'b': OfficialWeights('b', _RELEASE + 'tnt_b_82.9.pth.tar', 'not stated (huawei-noah/Efficient-AI-Backbones)',
                             82.9, mean=HALF, std=HALF),
    }
    weights_note = ("timm's conversions https://huggingface.co/timm/tnt_s_patch16_224.in1k and "
                    'https://huggingface.co/timm/tnt_b_patch16_224.in1k load too.')
    stem_names = ('patch_embed', 'inner_pos', 'to_sentence', 'cls_token', 'outer_pos')
    pos_embed_name = 'outer_pos'

    def __init__(self, arch: Union[str, dict] = 's', in_channels: int = 3,
                 pretrain_img_size: Union[int, Sequence[int]] = 224, out_indices: Sequence[int] = (0, 1, 2, 3),
                 feature_block: int = -1, final_norm: bool = True, use_word_fine_maps: bool = False,
                 window_size: int = 0, window_block_indexes: Sequence[int] = (), drop_path_rate: float = 0.,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        name = type(self).__name__
        s = self.arch_settings
        embed_dims, inner_dims, depth = s['embed_dims'], s['inner_dims'], s['depth']
        num_heads, inner_heads = s['num_heads'], s['inner_heads']
        for key in self.essential_keys:
            if not isinstance(s[key], int) or s[key] < 1:
                raise ValueError(f'{name}: arch {key} must be a positive int, got {s[key]!r}')
        if embed_dims % num_heads or embed_dims % 4:
            raise ValueError(f'{name}: embed_dims {embed_dims} must be divisible by num_heads {num_heads} and by 4 '
                             f'(pyramid widths D/4, D/2)')
        if inner_dims % inner_heads:
            raise ValueError(f'{name}: inner_dims {inner_dims} must be divisible by inner_heads {inner_heads}')
        mlp_ratio = s['mlp_ratio']
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f'{name}: arch mlp_ratio must be positive, got {mlp_ratio!r}')
        num_blocks, window_block_indexes = self.check_block_args(
            depth, feature_block, window_size, window_block_indexes, drop_path_rate)
        img_size = (pretrain_img_size, ) * 2 if isinstance(pretrain_img_size, int) else tuple(pretrain_img_size)
        if len(img_size) != 2 or any(not isinstance(v, int) or v < PATCH_SIZE for v in img_size):
            raise ValueError(f'{name}: pretrain_img_size must be an int or (H, W) >= {PATCH_SIZE}, '
                             f'got {pretrain_img_size!r}')

        self.embed_dims, self.inner_dims = embed_dims, inner_dims
        self.pretrain_grid: Size2d = (img_size[0] // PATCH_SIZE, img_size[1] // PATCH_SIZE)
        qkv_bias = bool(s['qkv_bias'])
        # stem: words, their position table, sentences (projection has a bias here), class token, sentence table
        self.patch_embed = WordEmbed(in_channels, inner_dims)
        self.inner_pos = nn.Parameter(torch.zeros(1, NUM_WORDS, inner_dims))
        self.to_sentence = SentenceProjection(inner_dims, embed_dims, bias=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.outer_pos = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid[0] * self.pretrain_grid[1], embed_dims))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linspace(0, rate, depth)
        self.blocks = nn.ModuleList(
            TNTBlock(embed_dims, inner_dims, num_heads, inner_heads, mlp_ratio, qkv_bias, rates[i],
                     window_size if i in window_block_indexes else 0) for i in range(num_blocks))
        self.norm = nn.LayerNorm(embed_dims, eps=NORM_EPS) if final_norm else None
        self.use_word_fine_maps = use_word_fine_maps
        # branches of returned levels only (unreturned ones would hold parameters without gradients: DDP errors)
        self.pyramid = SimpleFeaturePyramid(embed_dims, (inner_dims, 4 * inner_dims) if use_word_fine_maps else (),
                                            levels=self.out_indices)
        self.out_channels: Tuple[int, ...] = tuple(self.pyramid.out_channels)
        self.num_layers = num_blocks

        # the official initialisation (training from scratch): Linear/LN, the three tables; the conv keeps torch's
        self.apply(init_linear_and_layernorm)
        for table in (self.cls_token, self.outer_pos, self.inner_pos):
            trunc_normal_(table, std=.02)
        self.register_load_state_dict_pre_hook(self.resize_pos_embed_on_load)

    # ------------------------------------------------------------------------------------------------------ forward
    def forward_intermediates(self, x: torch.Tensor, block_indices: Iterable[int] = (),
                              official_grid: bool = False) -> Dict[str, torch.Tensor]:
        """Run the network and return its maps (NCHW, class token dropped).

        Keys: ``block{i}`` (sentence map after block ``i``, stride 16) for ``block_indices``, ``words`` (the word map
        after the last block built, stride 4, ``inner_dims`` channels), ``feature`` (the pyramid's stride-16 input:
        the last block's sentence map, after the final norm when ``final_norm``). The input is zero-padded at the
        bottom/right to whole patches; with ``official_grid`` the remainder pixels are dropped instead, as the
        official ``nn.Unfold`` does (for parity; the same for multiples of 16).
        """
        self.check_input(x)
        block_indices = set(block_indices)
        height, width = x.shape[-2:]
        if official_grid:
            x = x[..., :height - height % PATCH_SIZE, :width - width % PATCH_SIZE]
        else:
            x = self.pad_to_patches(x)
        words, grid = self.patch_embed(x)  # (B*N, 16, c)
        words = words + self.inner_pos
        sentences = self.with_class_token(self.to_sentence(words, x.shape[0], grid[0] * grid[1]), grid)  # (B, 1+N, D)
        feats = {}
        for i, block in enumerate(self.blocks):
            words, sentences = self.checkpoint(block, words, sentences, grid)
            if i in block_indices:
                feats[f'block{i}'] = tokens_to_map(sentences[:, 1:], grid)
        if self.norm is not None:
            sentences = self.norm(sentences)
        feats['words'] = words_to_map(words, grid)
        feats['feature'] = tokens_to_map(sentences[:, 1:], grid)
        return feats

    def forward_feature(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
        feats = self.forward_intermediates(x)
        fine_maps = ()
        if self.use_word_fine_maps:  # stride 4 as it is, stride 8 by 2x2 space-to-depth (4c channels)
            fine_maps = (feats['words'], space_to_depth2(feats['words']))
        return feats['feature'], fine_maps

    # -------------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official (or timm non-legacy) keys -> ours. Idempotent: converted dicts pass through unchanged.

        * timm names -> official ones first (``pixel_embed`` -> ``patch_embed``, ``patch_pos`` -> ``outer_pos``,
          ``pixel_pos`` (1, c, 4, 4) -> ``inner_pos`` (1, 16, c), ``norm_in`` -> ``inner_norm1``, ...);
        * top-level ``proj_norm1/proj/proj_norm2`` -> ``to_sentence.*``, same in every block;
        * ``{inner,outer}_{norm1,attn,norm2,mlp}`` -> ``{inner,outer}.{norm1,attn,norm2,mlp}``, with the attention's
          ``qk`` and ``v`` projections (weights and biases) concatenated into ``qkv`` (rows: q, k, v);
        * ``outer_tokens`` (never used by the official forward) and the classifier ``head`` are dropped.
        """
        if any(k.startswith('blocks.') and k.endswith('.norm1_proj.weight') for k in state_dict) and not any(
                k.startswith('blocks.') and '.norm2_proj.' in k for k in state_dict):
            raise CheckpointError(
                'This is a checkpoint of timm\'s legacy TNT (tnt_s_legacy_patch16_224, also mmpretrain\'s TNT): it '
                'runs the word convolution over the whole image and has another word-to-sentence projection, so it '
                'computes something else than the official TNT implemented here. Use the official weights '
                f'({TNT.official_weights["s"].url}) or timm\'s tnt_s_patch16_224.in1k instead.')
        official = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'head_drop.')) or key == 'outer_tokens':
                continue
            match = re.match(r'^(blocks\.\d+\.)([a-z_0-9]+)(\..*)$', key)
            if match and match.group(2) in _TIMM_BLOCK_NAMES:
                key = match.group(1) + _TIMM_BLOCK_NAMES[match.group(2)] + match.group(3)
            for timm_name, official_name in _TIMM_TOP_NAMES.items():
                if key.startswith(timm_name):
                    key = official_name + key[len(timm_name):]
            if key == 'pixel_pos':  # (1, c, 4, 4) -> (1, 16, c), words row-major
                key, value = 'inner_pos', value.flatten(2).transpose(1, 2).contiguous()
            official[key] = value
        converted = {}
        for key, value in official.items():
            key = re.sub(r'^((?:blocks\.\d+\.)?)(proj_norm1|proj|proj_norm2)\.', r'\1to_sentence.\2.', key)
            match = re.match(r'^(blocks\.\d+\.)(inner|outer)_(norm1|attn|norm2|mlp)\.(.*)$', key)
            if match:
                prefix, side, part, rest = match.groups()
                if part == 'attn' and rest.startswith(('qk.', 'v.')):
                    param = rest.split('.', 1)[1]
                    qk = official.get(f'{prefix}{side}_attn.qk.{param}')
                    v = official.get(f'{prefix}{side}_attn.v.{param}')
                    if qk is None or v is None:  # half a pair: keep the name, load_state_dict reports it
                        converted[key] = value
                    elif rest.startswith('qk.'):
                        converted[f'{prefix}{side}.attn.qkv.{param}'] = torch.cat([qk, v], dim=0)
                    continue
                key = f'{prefix}{side}.{part}.{rest}'
            converted[key] = value
        return converted

"""T2T-ViT (Yuan et al., "Tokens-to-Token ViT", ICCV 2021) as a stride 4/8/16/32 pyramid backbone.

Architecture (official ``yitu-opensource/T2T-ViT`` ``models/t2t_vit.py``, ``token_performer.py``,
``token_transformer.py``, ``transformer_block.py``):

* **Tokens-to-Token module** (the stem): three *soft splits* (overlapping unfolds: 7x7/4 pad 2, then 3x3/2 pad 1
  twice). After each of the first two a small token mixer re-structures the tokens into 64 channels - a
  single-head Performer (``t2t_type='performer'``, the ``T2T-ViT-N`` models) or a single-head softmax transformer
  (``'transformer'``, the ``T2T-ViT_t-N`` models). The third split is projected to the embedding width by a
  linear layer. Token maps: stride 4 (after mixer 1), stride 8 (after mixer 2), stride 16 (embedding).
* A class token and a fixed sinusoid position table (a non-trainable checkpoint entry), then plain pre-norm ViT
  blocks (no qkv bias, scale ``head_dim ** -0.5``, LayerNorm eps 1e-5) and a final LayerNorm.

Dense-prediction adaptation (not in the official code, which is a 224x224 classifier):

* **Any input size**: the official forward reshapes the token maps with ``sqrt(N)`` (square only); here the soft
  splits track the real ``(H, W)``. The input is zero-padded at the bottom/right to a multiple of 4 (at most 3
  pixels) so the stride-4 grid is exactly ``ceil(H/4)``; the 3x3/2 pad-1 splits then give ``ceil(./2)`` by
  themselves, so level ``i`` has ``ceil(H / 2**(i+2))`` cells with no cropping of the backbone's own maps.
* **Position table**: bicubic resize of the grid part (class entry kept) to the actual stride-16 grid, as the
  official ``utils.resize_pos_embed`` does for square sizes; cached per size. Checkpoints made at another
  resolution (e.g. the 384x384 ``83.3_T2T_ViT_14``) are resized when loaded.
* **Pyramid**: ViTDet's simple feature pyramid (shared :class:`SimpleFeaturePyramid`) from the stride-16 map of
  ``feature_block`` (default the last block, with the final norm when ``final_norm``). With
  ``use_t2t_fine_maps=True`` levels 0/1 are instead the T2T module's own stride-4/8 token maps (64 channels,
  projected by 1x1 conv + LN).
* **Windowed attention** (optional, ViTDet-style, for large inputs): blocks listed in ``window_block_indexes``
  attend within ``window_size`` x ``window_size`` windows of the grid plus the class token; the class token
  attends globally (the shared :class:`~mmvit_backbones.models.layers.ViTBlock`, as PlainViT's). Weights are
  unchanged, so ImageNet checkpoints load as they are.
* **Stages** for ``frozen_stages``: 0 is the stem (T2T module, class token, position table); stages 1..4 are the
  four quarters of the blocks (``blocks[d*s//4 : d*(s+1)//4]`` for depth ``d``); the final norm goes with stage 4.

Checkpoints: the official ``*.pth.tar`` files (timm ``CheckpointSaver``: ``state_dict`` / ``state_dict_ema``;
the EMA weights are preferred by :mod:`mmvit_backbones.checkpoint`) load directly through ``init_cfg``; the
Performer's random-feature matrix ``w`` is a checkpoint entry and is loaded, never redrawn.
"""
import math
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import (
    Mlp,
    SimpleFeaturePyramid,
    Size2d,
    ViTBlock,
    attention,
    init_linear_and_layernorm,
    tokens_to_map,
)
from .base import OfficialWeights
from .single_scale import SingleScaleBackbone

Runner = Callable[..., torch.Tensor]

# Soft splits of the T2T module: (kernel, stride, padding).
SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))

_RELEASE = 'https://github.com/yitu-opensource/T2T-ViT/releases/download/main/'
_LICENSE = 'BSD-3-Clause-Clear'


def _run(fn: Callable, *args):
    return fn(*args)


def sinusoid_table(num_positions: int, dims: int) -> torch.Tensor:
    """The official fixed 1-D position table: (1, num_positions, dims), sin on even channels, cos on odd ones."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    channel = torch.arange(dims, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode='floor') / dims)
    table = torch.where(channel.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


def soft_split_size(size: int, step: int) -> int:
    kernel, stride, padding = SOFT_SPLITS[step]
    return (size + 2 * padding - kernel) // stride + 1


class PerformerTokenMixer(nn.Module):
    """T2T's single-head Performer layer (``Token_performer``): linear attention with positive random features.

    Tokens of ``in_dims`` (a soft-split window) become tokens of ``dims``: ``kqv`` projects to key, query and value
    (in this order), the attention output is added to the value (the input width differs, so ``v`` is the skip
    path), then an MLP with a residual. The softmax kernel ``exp(q.k)`` is approximated with ``m`` positive random
    features ``phi(x) = exp(w x - |x|^2 / 2) / sqrt(m)``; ``w`` (m, dims) is drawn once at initialisation and saved
    in the checkpoint (a buffer here), so it is loaded, never redrawn. The feature maps are computed in float32
    (exponentials overflow in half precision; the official code casts too and warns about NaNs with AMP).
    Note: this is linear (kernelised) attention and has no softmax, so it does not go through the SDPA core.
    """

    def __init__(self, in_dims: int, dims: int, kernel_ratio: float = 0.5, drop: float = 0.1):
        super().__init__()
        self.dims = dims
        self.num_features = int(dims * kernel_ratio)
        self.norm1 = nn.LayerNorm(in_dims)
        self.kqv = nn.Linear(in_dims, 3 * dims)
        self.proj = nn.Linear(dims, dims)
        self.drop = nn.Dropout(drop)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = Mlp(dims, dims, drop=(0.0, drop))  # dropout after fc2 only, as the official MLP
        w = nn.init.orthogonal_(torch.empty(self.num_features, dims)) * math.sqrt(self.num_features)
        self.register_buffer('w', w, persistent=True)
        self.eps = 1e-8  # keeps the normaliser away from 0

    def random_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dims) float32 -> (B, T, m) positive random features of the Gaussian kernel."""
        half_sq_norm = 0.5 * (x * x).sum(dim=-1, keepdim=True)  # (B, T, 1)
        return torch.exp(x @ self.w.float().t() - half_sq_norm) / math.sqrt(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, in_dims) -> (B, T, dims)
        k, q, v = self.kqv(self.norm1(x)).split(self.dims, dim=-1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            kp, qp = self.random_features(k.float()), self.random_features(q.float())  # (B, T, m)
            normaliser = qp @ kp.sum(dim=1).unsqueeze(-1)  # (B, T, 1)
            context = kp.transpose(1, 2) @ v.float()  # (B, m, dims)
            y = (qp @ context) / (normaliser + self.eps)  # (B, T, dims)
        x = v + self.drop(self.proj(y.to(v.dtype)))
        return x + self.mlp(self.norm2(x))


class TransformerTokenMixer(nn.Module):
    """T2T's single-head softmax-attention layer (``Token_transformer``), used by the ``T2T-ViT_t`` models.

    Tokens of ``in_dims`` become tokens of ``dims``; the value is the skip path of the attention (widths differ).
    The official attention scale is ``in_dims ** -0.5`` (its ``head_dim`` is the *input* width divided by the
    single head, e.g. 147 or 576), not ``dims ** -0.5``; kept for parity. No qkv bias; MLP ratio 1.
    """

    def __init__(self, in_dims: int, dims: int):
        super().__init__()
        self.dims = dims
        self.scale = in_dims ** -0.5
        self.norm1 = nn.LayerNorm(in_dims)
        self.qkv = nn.Linear(in_dims, 3 * dims, bias=False)
        self.proj = nn.Linear(dims, dims)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = Mlp(dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, in_dims) -> (B, T, dims)
        batch, tokens, _ = x.shape
        # unbind, not tuple unpacking: iterating over a tensor fixes its length while tracing (an export error)
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, 1, self.dims).permute(2, 0, 3, 1, 4).unbind(0)
        y = attention(q, k, v, scale=self.scale).reshape(batch, tokens, self.dims)  # one head: (B, 1, T, d)
        x = v.squeeze(1) + self.proj(y)
        return x + self.mlp(self.norm2(x))


class TokensToToken(nn.Module):
    """The T2T stem: soft split -> mixer -> soft split -> mixer -> soft split -> linear projection.

    Keeps the real token-grid size at every step (the official module assumes square grids).
    """

    def __init__(self, in_channels: int, embed_dims: int, token_dims: int, t2t_type: str, kernel_ratio: float,
                 drop: float):
        super().__init__()
        widths = (in_channels * SOFT_SPLITS[0][0] ** 2, token_dims * SOFT_SPLITS[1][0] ** 2)
        if t2t_type == 'performer':
            self.attn1 = PerformerTokenMixer(widths[0], token_dims, kernel_ratio, drop)
            self.attn2 = PerformerTokenMixer(widths[1], token_dims, kernel_ratio, drop)
        else:
            self.attn1 = TransformerTokenMixer(widths[0], token_dims)
            self.attn2 = TransformerTokenMixer(widths[1], token_dims)
        self.project = nn.Linear(token_dims * SOFT_SPLITS[2][0] ** 2, embed_dims)

    @staticmethod
    def soft_split(x: torch.Tensor, step: int) -> Tuple[torch.Tensor, Size2d]:
        """(B, C, H, W) -> overlapping k x k windows as tokens (B, h*w, C*k*k) and the grid (h, w)."""
        kernel, stride, padding = SOFT_SPLITS[step]
        grid = (soft_split_size(x.shape[-2], step), soft_split_size(x.shape[-1], step))
        return F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2), grid

    def forward(self, x: torch.Tensor, run: Runner = _run
                ) -> Tuple[torch.Tensor, Size2d, List[torch.Tensor]]:
        """x: (B, C, H, W). Returns the stride-16 tokens (B, h*w, D), their grid (h, w) and the stride-4/8 maps
        (B, token_dims, h4, w4), (B, token_dims, h8, w8)."""
        maps = []
        for step, mixer in enumerate((self.attn1, self.attn2)):
            tokens, (h, w) = self.soft_split(x, step)
            tokens = run(mixer, tokens)  # (B, h*w, token_dims)
            x = tokens_to_map(tokens, (h, w))
            maps.append(x)
        tokens, grid = self.soft_split(x, 2)
        return self.project(tokens), grid, maps


@register_model
class T2TViT(SingleScaleBackbone):
    """T2T-ViT backbone returning NCHW maps at strides 4/8/16/32 for any input size.

    Args:
        arch: ``'7' '10' '12' '14' '19' '24'`` (Performer T2T), ``'t_14' 't_19' 't_24'`` (transformer T2T), the
            same with a ``t2t_vit_`` prefix, ``'14_resnext'``/``'14_wide'``, or a dict with ``embed_dims``,
            ``depth``, ``num_heads``, ``mlp_ratio`` and optionally ``t2t_type`` (``'performer'``/``'transformer'``),
            ``token_dims`` (64), ``kernel_ratio`` (0.5), ``qkv_bias`` (False).
        pretrain_img_size: size (int or (H, W)) the position table is built for; checkpoints of other sizes are
            resized on load. 224 for the released models except ``83.3_T2T_ViT_14`` (384).
        out_indices: output levels (0..3: strides 4, 8, 16, 32).
        feature_block: index of the block whose output feeds the pyramid (default the last); later blocks are not
            built (their checkpoint entries are reported as unused).
        final_norm: apply the final LayerNorm to that output.
        use_t2t_fine_maps: levels 0/1 from the T2T stride-4/8 token maps instead of deconvolutions.
        window_size / window_block_indexes: ViTDet-style windowed attention in the listed blocks.
        drop_path_rate: stochastic depth, linear over the blocks.
        t2t_drop_rate: dropout inside the Performer T2T layers (hard-coded 0.1 officially; the transformer T2T has
            none).
        frozen_stages: -1 none; 0 the stem (T2T module, class token, position table); i the stem and the first i
            quarters of the blocks (4 includes the final norm).
        with_cp: activation checkpointing of every T2T layer and block.
    """

    arch_zoo = {
        '7': dict(embed_dims=256, depth=7, num_heads=4, mlp_ratio=2.0),
        '10': dict(embed_dims=256, depth=10, num_heads=4, mlp_ratio=2.0),
        '12': dict(embed_dims=256, depth=12, num_heads=4, mlp_ratio=2.0),
        '14': dict(embed_dims=384, depth=14, num_heads=6, mlp_ratio=3.0),
        '19': dict(embed_dims=448, depth=19, num_heads=7, mlp_ratio=3.0),
        '24': dict(embed_dims=512, depth=24, num_heads=8, mlp_ratio=3.0),
        't_14': dict(embed_dims=384, depth=14, num_heads=6, mlp_ratio=3.0, t2t_type='transformer'),
        't_19': dict(embed_dims=448, depth=19, num_heads=7, mlp_ratio=3.0, t2t_type='transformer'),
        't_24': dict(embed_dims=512, depth=24, num_heads=8, mlp_ratio=3.0, t2t_type='transformer'),
        # official constructors without released weights
        '14_resnext': dict(embed_dims=384, depth=14, num_heads=32, mlp_ratio=3.0),
        '14_wide': dict(embed_dims=768, depth=4, num_heads=12, mlp_ratio=3.0),
    }
    arch_aliases = {f't2t_vit_{name}': name for name in arch_zoo}  # the official function names
    essential_keys = ('embed_dims', 'depth', 'num_heads', 'mlp_ratio')
    arch_defaults = dict(t2t_type='performer', token_dims=64, kernel_ratio=0.5, qkv_bias=False)
    official_weights = {
        '7': OfficialWeights('7', _RELEASE + '71.7_T2T_ViT_7.pth.tar', _LICENSE, 71.7),
        '10': OfficialWeights('10', _RELEASE + '75.2_T2T_ViT_10.pth.tar', _LICENSE, 75.2),
        '12': OfficialWeights('12', _RELEASE + '76.5_T2T_ViT_12.pth.tar', _LICENSE, 76.5),
        '14': OfficialWeights('14', _RELEASE + '81.5_T2T_ViT_14.pth.tar', _LICENSE, 81.5),
        '14_384': OfficialWeights('14', _RELEASE + '83.3_T2T_ViT_14.pth.tar', _LICENSE, 83.3, input_size=384,
                                  kwargs=dict(pretrain_img_size=384)),
        '19': OfficialWeights('19', _RELEASE + '81.9_T2T_ViT_19.pth.tar', _LICENSE, 81.9),
        '24': OfficialWeights('24', _RELEASE + '82.3_T2T_ViT_24.pth.tar', _LICENSE, 82.3),
        '24_token_labeling': OfficialWeights('24', _RELEASE + '84.2_T2T_ViT_24.pth.tar', _LICENSE, 84.2,
                                             note='trained with token labeling'),
        't_14': OfficialWeights('t_14', _RELEASE + '81.7_T2T_ViTt_14.pth.tar', _LICENSE, 81.7),
        't_19': OfficialWeights('t_19', _RELEASE + '82.4_T2T_ViTt_19.pth.tar', _LICENSE, 82.4),
        't_24': OfficialWeights('t_24', _RELEASE + '82.6_T2T_ViTt_24.pth.tar', _LICENSE, 82.6),
    }
    stem_names = ('t2t', 'cls_token', 'pos_embed')
    patch_stride = 16

    def __init__(self, arch: Union[str, dict] = '14', in_channels: int = 3,
                 pretrain_img_size: Union[int, Sequence[int]] = 224, out_indices: Sequence[int] = (0, 1, 2, 3),
                 feature_block: int = -1, final_norm: bool = True, use_t2t_fine_maps: bool = False,
                 window_size: int = 0, window_block_indexes: Sequence[int] = (), drop_path_rate: float = 0.,
                 t2t_drop_rate: float = 0.1, frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        name = type(self).__name__
        s = self.arch_settings
        embed_dims, depth, num_heads = s['embed_dims'], s['depth'], s['num_heads']
        t2t_type, token_dims = s['t2t_type'], s['token_dims']
        for key, value in (('embed_dims', embed_dims), ('depth', depth), ('num_heads', num_heads),
                           ('token_dims', token_dims)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name}: arch {key} must be a positive int, got {value!r}')
        if embed_dims % num_heads or embed_dims % 4:
            raise ValueError(f'{name}: embed_dims {embed_dims} must be divisible by num_heads {num_heads} and by 4 '
                             f'(pyramid widths D/4, D/2)')
        if t2t_type not in ('performer', 'transformer'):
            raise ValueError(f"{name}: t2t_type must be 'performer' or 'transformer', got {t2t_type!r}")
        num_blocks, window_block_indexes = self.check_block_args(
            depth, feature_block, window_size, window_block_indexes, drop_path_rate)
        img_size = (pretrain_img_size, ) * 2 if isinstance(pretrain_img_size, int) else tuple(pretrain_img_size)
        if len(img_size) != 2 or any(not isinstance(v, int) or v < self.patch_stride for v in img_size):
            raise ValueError(f'{name}: pretrain_img_size must be an int or (H, W) >= 16, got {pretrain_img_size!r}')

        self.embed_dims = embed_dims
        self.t2t = TokensToToken(in_channels, embed_dims, token_dims, t2t_type, s['kernel_ratio'],
                                 t2t_drop_rate)
        # the official table has img_size // 16 cells per side (sizes that are multiples of 16)
        self.pretrain_grid: Size2d = (img_size[0] // self.patch_stride, img_size[1] // self.patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        num_positions = 1 + self.pretrain_grid[0] * self.pretrain_grid[1]
        self.pos_embed = nn.Parameter(sinusoid_table(num_positions, embed_dims), requires_grad=False)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear decay rule
        # plain pre-norm ViT blocks; the official LayerNorms keep PyTorch's default eps 1e-5
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dims, num_heads, s['mlp_ratio'], s['qkv_bias'], rates[i], norm_eps=1e-5,
                     window_size=window_size if i in window_block_indexes else 0) for i in range(num_blocks))
        self.norm = nn.LayerNorm(embed_dims) if final_norm else None
        self.pyramid = SimpleFeaturePyramid(embed_dims, (token_dims, token_dims) if use_t2t_fine_maps else (),
                                            levels=self.out_indices)  # branches of returned levels only
        self.out_channels: Tuple[int, ...] = tuple(self.pyramid.out_channels)
        self.num_layers = num_blocks

        self.apply(init_linear_and_layernorm)  # the official initialisation (training from scratch)
        trunc_normal_(self.cls_token, std=.02)
        self.register_load_state_dict_pre_hook(self.resize_pos_embed_on_load)

    # ------------------------------------------------------------------------------------------------- forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d, Tuple[torch.Tensor, torch.Tensor]]:
        """(B, C, H, W) -> tokens (B, 1 + h*w, D) with the class token and position table, the stride-16 grid, and
        the T2T stride-4/8 token maps. The image is zero-padded to a multiple of 4, so that the grids have ``ceil``
        sizes (the official grid is ``floor((H-3)/4)+1``: the same for multiples of 4)."""
        tokens, grid, (map4, map8) = self.t2t(self.pad_to_patches(x, 4), run=self.checkpoint)
        return self.with_class_token(tokens, grid), grid, (map4, map8)

    def forward_intermediates(self, x: torch.Tensor, block_indices: Iterable[int] = (),
                              official_grid: bool = False) -> Dict[str, torch.Tensor]:
        """Run the network and return its maps (all NCHW, class token dropped).

        Keys: ``stride4``/``stride8`` (T2T token maps), ``tokens`` (stride-16 projection, before the class token and
        position table), ``block{i}`` for ``block_indices``, ``feature`` (the pyramid's input).
        """
        self.check_input(x)
        block_indices = set(block_indices)
        if not official_grid:
            x = self.pad_to_patches(x, 4)
        tokens, grid, (map4, map8) = self.t2t(x, run=self.checkpoint)
        feats = {'stride4': map4, 'stride8': map8, 'tokens': tokens_to_map(tokens, grid)}
        x = self.with_class_token(tokens, grid)
        for i, block in enumerate(self.blocks):
            x = self.checkpoint(block, x, grid)
            if i in block_indices:
                feats[f'block{i}'] = tokens_to_map(x[:, 1:], grid)
        if self.norm is not None:
            x = self.norm(x)
        feats['feature'] = tokens_to_map(x[:, 1:], grid)
        return feats

    # --------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official keys -> ours: ``tokens_to_token.attention{1,2}`` -> ``t2t.attn{1,2}`` (Performer ``mlp.0/2`` ->
        ``mlp.fc1/fc2``; transformer ``attn.qkv/proj`` -> ``qkv/proj``), ``tokens_to_token.project`` ->
        ``t2t.project``; the classifier ``head`` is dropped. Converted dicts pass through unchanged."""
        rules = ((r'^tokens_to_token\.attention(\d)\.mlp\.0\.', r't2t.attn\1.mlp.fc1.'),
                 (r'^tokens_to_token\.attention(\d)\.mlp\.2\.', r't2t.attn\1.mlp.fc2.'),
                 (r'^tokens_to_token\.attention(\d)\.attn\.', r't2t.attn\1.'),
                 (r'^tokens_to_token\.attention(\d)\.', r't2t.attn\1.'),
                 (r'^tokens_to_token\.', 't2t.'))
        converted = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'head_dist.')):
                continue
            for pattern, repl in rules:
                new_key, count = re.subn(pattern, repl, key)
                if count:
                    key = new_key
                    break
            converted[key] = value
        return converted

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
from ...testing.parity import ParityAdapter, register_parity_adapter
from ...registry import register_model
from ..layers import (Mlp, SimpleFeaturePyramid, SizeCache, ViTBlock, attention, init_linear_and_layernorm,
                      resize_grid_embed, tokens_to_map)
from ..layers.traceable import ceil_div
from .base import PyramidBackbone

Size2d = Tuple[int, int]
Runner = Callable[..., torch.Tensor]

# Soft splits of the T2T module: (kernel, stride, padding).
SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))

WEIGHTS_URL = 'https://github.com/yitu-opensource/T2T-ViT/releases/download/main/'
WEIGHTS_FILES = {
    '7': '71.7_T2T_ViT_7.pth.tar', '10': '75.2_T2T_ViT_10.pth.tar', '12': '76.5_T2T_ViT_12.pth.tar',
    '14': '81.5_T2T_ViT_14.pth.tar (224) or 83.3_T2T_ViT_14.pth.tar (384)', '19': '81.9_T2T_ViT_19.pth.tar',
    '24': '82.3_T2T_ViT_24.pth.tar or 84.2_T2T_ViT_24.pth.tar (token labeling)',
    't_14': '81.7_T2T_ViTt_14.pth.tar', 't_19': '82.4_T2T_ViTt_19.pth.tar', 't_24': '82.6_T2T_ViTt_24.pth.tar',
}


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
        self.mlp = Mlp(dims, dims, drop=drop)
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


_PERFORMER = dict(t2t_type='performer')
_TRANSFORMER = dict(t2t_type='transformer')


def _arch(embed_dims: int, depth: int, num_heads: int, mlp_ratio: float, kind: dict) -> dict:
    return dict(embed_dims=embed_dims, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, token_dims=64,
                kernel_ratio=0.5, qkv_bias=False, **kind)


def _zoo() -> Dict[str, dict]:
    zoo = {
        '7': _arch(256, 7, 4, 2., _PERFORMER), '10': _arch(256, 10, 4, 2., _PERFORMER),
        '12': _arch(256, 12, 4, 2., _PERFORMER), '14': _arch(384, 14, 6, 3., _PERFORMER),
        '19': _arch(448, 19, 7, 3., _PERFORMER), '24': _arch(512, 24, 8, 3., _PERFORMER),
        't_14': _arch(384, 14, 6, 3., _TRANSFORMER), 't_19': _arch(448, 19, 7, 3., _TRANSFORMER),
        't_24': _arch(512, 24, 8, 3., _TRANSFORMER),
        # official constructors without released weights
        '14_resnext': _arch(384, 14, 32, 3., _PERFORMER), '14_wide': _arch(768, 4, 12, 3., _PERFORMER),
    }
    for name in list(zoo):  # aliases: the official function names
        zoo[f't2t_vit_{name}'] = zoo[name]
    return zoo


@register_model
class T2TViT(PyramidBackbone):
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

    arch_zoo = _zoo()
    essential_keys = ('embed_dims', 'depth', 'num_heads', 'mlp_ratio')
    weights_hint = (f'official ImageNet checkpoints of yitu-opensource/T2T-ViT, {WEIGHTS_URL}<file> (e.g. '
                    f'{WEIGHTS_URL}81.5_T2T_ViT_14.pth.tar); files: '
                    + '; '.join(f'arch {k}: {v}' for k, v in WEIGHTS_FILES.items()))
    new_param_prefixes = ('pyramid.', )
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
        t2t_type = s.get('t2t_type', 'performer')
        token_dims = s.get('token_dims', 64)
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
        self.t2t = TokensToToken(in_channels, embed_dims, token_dims, t2t_type, s.get('kernel_ratio', 0.5),
                                 t2t_drop_rate)
        # the official table has img_size // 16 cells per side (sizes that are multiples of 16)
        self.pretrain_grid: Size2d = (img_size[0] // self.patch_stride, img_size[1] // self.patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        num_positions = 1 + self.pretrain_grid[0] * self.pretrain_grid[1]
        self.pos_embed = nn.Parameter(sinusoid_table(num_positions, embed_dims), requires_grad=False)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear decay rule
        # plain pre-norm ViT blocks; the official LayerNorms keep PyTorch's default eps 1e-5
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dims, num_heads, s['mlp_ratio'], s.get('qkv_bias', False), rates[i], norm_eps=1e-5,
                     window_size=window_size if i in window_block_indexes else 0) for i in range(num_blocks))
        self.norm = nn.LayerNorm(embed_dims) if final_norm else None
        self.pyramid = SimpleFeaturePyramid(embed_dims, (token_dims, token_dims) if use_t2t_fine_maps else (),
                                            levels=self.out_indices)  # branches of returned levels only
        self.out_channels: Tuple[int, ...] = tuple(self.pyramid.out_channels)
        self.num_layers = num_blocks
        # stage s holds blocks [bounds[s], bounds[s + 1])
        self.stage_bounds = tuple(num_blocks * i // 4 for i in range(5))
        self._pos_cache = SizeCache()

        self.apply(init_linear_and_layernorm)  # the official initialisation (training from scratch)
        trunc_normal_(self.cls_token, std=.02)
        self.register_load_state_dict_pre_hook(self._resize_pos_embed_on_load)

    # ------------------------------------------------------------------------------------------ position table
    @staticmethod
    def _resize_pos_embed_on_load(module: 'T2TViT', state_dict: dict, prefix: str, *args) -> None:
        """A checkpoint made at another resolution (square grid, e.g. 24x24+1 at 384) is resized to ours.

        A static hook that gets the module as argument, so copies of the model (deepcopy) use their own table."""
        key = prefix + 'pos_embed'
        value = state_dict.get(key)
        if value is None or value.shape == module.pos_embed.shape or value.dim() != 3:
            return
        side = math.isqrt(value.shape[1] - 1)
        if side * side != value.shape[1] - 1:
            return  # not a square grid: left for load_state_dict to report the shape mismatch
        state_dict[key] = resize_grid_embed(value, (side, side), module.pretrain_grid, num_extra_tokens=1,
                                            mode='bicubic')

    def position_embedding(self, grid: Size2d) -> torch.Tensor:
        """(1, 1 + h*w, D): the table resized (bicubic, class entry kept) to the actual grid, cached per size."""
        return self._pos_cache.get(grid, [self.pos_embed], lambda: resize_grid_embed(
            self.pos_embed, self.pretrain_grid, grid, num_extra_tokens=1, mode='bicubic'))

    # ------------------------------------------------------------------------------------------------- forward
    def forward_intermediates(self, x: torch.Tensor, block_indices: Iterable[int] = (),
                              official_grid: bool = False) -> Dict[str, torch.Tensor]:
        """Run the network and return its maps (all NCHW, class token dropped).

        Keys: ``stride4``/``stride8`` (T2T token maps), ``tokens`` (stride-16 projection, before class token and
        position table), ``block{i}`` for ``block_indices``, ``feature`` (the pyramid's input). With
        ``official_grid`` the input is not padded to a multiple of 4 (the official grid ``floor((H-3)/4)+1``;
        used for parity, identical when H and W are multiples of 4).
        """
        self.check_input(x)
        block_indices = set(block_indices)
        if not official_grid:
            x = F.pad(x, (0, -x.shape[-1] % 4, 0, -x.shape[-2] % 4))
        tokens, (h, w), (map4, map8) = self.t2t(x, run=self.checkpoint)
        batch = tokens.shape[0]
        feats = {'stride4': map4, 'stride8': map8, 'tokens': tokens_to_map(tokens, (h, w))}
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1) + self.position_embedding((h, w))
        for i, block in enumerate(self.blocks):
            x = self.checkpoint(block, x, (h, w))
            if i in block_indices:
                feats[f'block{i}'] = tokens_to_map(x[:, 1:], (h, w))
        if self.norm is not None:
            x = self.norm(x)
        feats['feature'] = tokens_to_map(x[:, 1:], (h, w))
        return feats

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        if x.shape[0] == 0:
            return self.empty_outputs(x)
        height, width = x.shape[-2:]
        feats = self.forward_intermediates(x)
        outs = self.pyramid(feats['feature'], fine_maps=(feats['stride4'], feats['stride8']),
                            levels=self.out_indices)
        # deconvolved levels cover 4*ceil(H/16) >= ceil(H/4) cells: crop to the exact size
        return tuple(out[..., :ceil_div(height, 2 ** (level + 2)), :ceil_div(width, 2 ** (level + 2))]
                     for level, out in zip(self.out_indices, outs))

    # ------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[Union[nn.Module, nn.Parameter]]:
        yield from (self.t2t, self.cls_token, self.pos_embed)
        yield from self.blocks[:self.stage_bounds[min(frozen_stages, 4)]]
        if frozen_stages >= 4 and self.norm is not None:
            yield self.norm

    def layer_depth(self, name: str) -> int:
        if name.startswith(('t2t.', 'cls_token', 'pos_embed')):
            return 0
        match = re.match(r'blocks\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1
        return self.num_layers + 1

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


# ------------------------------------------------------------------------------------------------------ parity
def arch_from_official_keys(shapes: Dict[str, Sequence[int]], variant: str = '') -> dict:
    """Hyper-parameters of an official-layout state dict (``{key: shape}``); heads come from the named variant
    when its width matches, else the 64-wide heads all released models use."""
    embed_dims = int(shapes['cls_token'][-1])
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    performer = 'tokens_to_token.attention1.w' in shapes
    token_dims = int(shapes['tokens_to_token.project.weight'][1]) // SOFT_SPLITS[2][0] ** 2
    name = variant.lower().replace('-', '_')
    name = name[len('t2t_vit_'):] if name.startswith('t2t_vit_') else name
    known = T2TViT.arch_zoo.get(name)
    num_heads = known['num_heads'] if known and known['embed_dims'] == embed_dims else max(1, embed_dims // 64)
    arch = dict(embed_dims=embed_dims, depth=depth, num_heads=num_heads,
                mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / embed_dims, token_dims=token_dims,
                qkv_bias='blocks.0.attn.qkv.bias' in shapes,
                t2t_type='performer' if performer else 'transformer')
    if performer:
        arch['kernel_ratio'] = shapes['tokens_to_token.attention1.w'][0] / token_dims
    return arch


def _official_grid(hw: Sequence[int]) -> Size2d:
    sizes = []
    for size in hw:
        for step in range(3):
            size = soft_split_size(size, step)
        sizes.append(size)
    return tuple(sizes)


@register_parity_adapter('t2t_vit')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official T2T-ViT fixture: variant from the key shapes, position-table grid from its length (the
    input's stride-16 grid when the counts match, else a square grid), outputs as the fixture notes say."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    arch = arch_from_official_keys(shapes, fixture.get('variant', ''))
    in_channels = shapes['tokens_to_token.attention1.' + (
        'kqv.weight' if arch['t2t_type'] == 'performer' else 'attn.qkv.weight')][1] // SOFT_SPLITS[0][0] ** 2
    grid_count = shapes['pos_embed'][1] - 1
    input_grid = _official_grid(fixture['input_hw'])
    side = math.isqrt(grid_count)
    if input_grid[0] * input_grid[1] == grid_count:
        pretrain_grid = input_grid
    elif side * side == grid_count:
        pretrain_grid = (side, side)
    else:
        raise ValueError(f'pos_embed of {grid_count} grid cells matches neither the input grid {input_grid} nor '
                         f'a square grid')
    blocks = sorted(int(m.group(1)) for m in (re.fullmatch(r'block(\d+)', k) for k in fixture['outputs']) if m)
    names = {'t2t_stride4': 'stride4', 't2t_stride8': 'stride8', 'tokens': 'tokens', 'norm': 'feature'}

    def build() -> T2TViT:
        return T2TViT(arch=arch, in_channels=in_channels, pretrain_img_size=tuple(16 * g for g in pretrain_grid))

    def outputs(model: T2TViT, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = model.forward_intermediates(x, block_indices=blocks, official_grid=True)
        result = {name: feats[key] for name, key in names.items()}
        result.update({f'block{i}': feats[f'block{i}'] for i in blocks})
        return result

    return ParityAdapter(build, outputs)

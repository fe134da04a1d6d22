"""DeepViT (Zhou et al., "DeepViT: Towards Deeper Vision Transformer", 2021) as a stride 4/8/16/32 backbone.

Architecture (official ``zhoudaquan/dvit_repo`` @ 1ccb152, ``models/deep_vision_transformer.py`` +
``models/layers.py``): a plain pre-norm ViT (patch 16, cls token, learned position table, 12 heads, ``qkv`` with bias,
MLP ratio 3, LayerNorm eps 1e-6, final LayerNorm) in which the last ``num_reattention_blocks`` blocks use
**re-attention**::

    A    = softmax(q k^T * head_dim^-0.5)               # (B, H, N, N), one map per head
    A'   = var_norm(reatten_matrix(A)) * reatten_scale  # Theta: 1x1 conv over the heads (with bias), BN over heads
    out  = A' v                                         # A' is not renormalised

``reatten_scale`` is ``head_dim^-0.5`` for DeepViT-S (``transform_scale``) and 1 otherwise. S and L also scale the
residual stream inside each block by ``scale_adjustment`` s = 0.5 (``x + attn(LN(s x)) / s``) and replace the
16x16 patch convolution by a small CNN (7x7/2 conv-BN-ReLU, 3x3 conv-BN-ReLU, 8x8/8 conv). Input normalisation is
mean = std = 0.5. Variants (``arch``): ``16b``/``24b``/``32b`` (dim 384, every block re-attends), ``s`` (dim 396,
16 blocks, the last 5 re-attend) and ``l`` (dim 420, 32 blocks, the last 12 re-attend).

The token-count problem and what this module does about it
-----------------------------------------------------------
Write the eval-mode BatchNorm as the affine map it is, ``a_h x + (beta_h - a_h mu_h)`` with ``a_h = gamma_h /
sqrt(var_h + eps)``, and fold Theta (weight ``T``, bias ``c``) and the scale ``r`` into it::

    A'_h = sum_g W[h, g] A_g + k_h         W = r diag(a) T,   k_h = r (a_h (c_h - mu_h) + beta_h)
    out_h = sum_g W[h, g] (A_g v_h) + k_h * sum_j v_h[j]

The first term is a mix of softmax averages of the values: it does not depend on how many tokens there are. The
second is a constant added to every map entry, which the map multiplies by the **sum** over all N values: at
N = 785 (a 448 input) it is four times what it was at the pretraining count N0 = 197, at 800x1333 (N = 4201) 21
times. The official eval-mode model is therefore silently wrong at any size other than 224 (and the BN's batch
statistics, which training would re-estimate over N x N maps, describe maps whose entries scale with 1/N).

The fix keeps what the map *means*: every row of a re-attention map keeps the total mass it had at pretraining.

* **Windowed blocks** (default: all but the last block of each quarter of the network, ViTDet's layout): grid
  tokens attend within ``window_size`` x ``window_size`` windows (default the pretraining grid, 14x14) plus the
  cls token, i.e. over exactly the 196 + 1 tokens the maps were calibrated on; the cls query attends globally
  (shared :class:`~mmvit_backbones.models.layers.ViTAttention` windowing, padded keys masked).
* **Every re-attention** (windowed or global) adds the constant term as ``k_h * N0 * mean_j v_h[j]`` over the keys
  the query really sees (masked padding excluded) instead of ``k_h * sum_j v_h[j]``, i.e. the constant per map
  entry is ``k_h * N0 / N``. Row sums of ``A'`` are then ``sum_g W[h, g] + N0 k_h`` at every N. At N = N0 (224 input,
  or any full window) this is the official computation exactly (parity fixture); ``token_count_invariant=False``
  gives the official rule at any N. The measure (``test_token_count_invariance``): median over channels of
  |log(RMS at 448 / RMS at 224)| of the last block's output, the 448 input being the 224 one tiled 2x2 (same
  patches, 4x the tokens): official rule log 4 = 1.39, this rule 0.02 (all blocks global), plain ViT 0.002.
* The re-attention BatchNorm always acts through its **running statistics** (``var_norm``'s parameters ``gamma``,
  ``beta`` and Theta learn; its statistics are never re-estimated): batch statistics of maps over N tokens are
  those of another distribution, and computing them needs every N x N map at once.

Memory: re-attention needs the full softmax map (no fused SDPA kernel). The map is computed in chunks of query rows
(at most ``MAP_CHUNK_ELEMENTS`` map entries each) in one reused workspace, and backward recomputes each chunk's
maps from q/k/v (:func:`~mmvit_backbones.models.layers.chunked_attention`), so a global re-attention block at
detection sizes holds a few chunks of map entries instead of every heads x N x N map and intermediate. Textbook mode
(:func:`~mmvit_backbones.models.layers.naive_attention_mode`) and ONNX export compute the maps in one pass.
Blocks without re-attention use SDPA (:func:`~mmvit_backbones.models.layers.attention`).

Dense-prediction adaptation otherwise as :class:`PlainViT`: the image is zero-padded at the bottom/right to a
multiple of 16 (the CNN stem then also gives exactly ``ceil(H/16)`` tokens), the position table is resized
bicubically to the token grid (cls kept; cached per size; checkpoints of another resolution resized on load), the
final LayerNorm is applied, and ViTDet's :class:`SimpleFeaturePyramid` builds strides 4/8/16/32 from the
stride-16 map (channels D/4, D/2, D, D). ``frozen_stages``: 0 is the stem (patch embedding, cls token, position
table), 1..4 the quarters of the blocks, the final norm goes with stage 4. Layer depth: stem 0, block ``i`` ``i+1``.

Checkpoints: the official files are timm ``CheckpointSaver`` dicts (``state_dict``, ``state_dict_ema``; EMA
preferred by :mod:`mmvit_backbones.checkpoint`) or flat state dicts; the keys are the module's own, the classifier
``head`` is dropped.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from timm.layers import DropPath, trunc_normal_

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import (
    Mlp,
    PatchConv2d,
    SimpleFeaturePyramid,
    Size2d,
    ViTAttention,
    channels_last_conv_weights,
    chunked_attention,
    init_linear_and_layernorm,
)
from .base import HALF, OfficialWeights
from .single_scale import SingleScaleBackbone

PATCH_SIZE = 16

_DRIVE = 'https://drive.google.com/file/d/{}/view'
_LICENSE = 'not stated (zhoudaquan/dvit_repo has no licence file)'


# ------------------------------------------------------------------------------------------------------- modules
class ConvPatchEmbed(nn.Module):
    """DeepViT-S/L's patch embedding (``PatchEmbed_CNN``): 7x7/2 conv-BN-ReLU, 3x3 conv-BN-ReLU (64 channels, no
    conv bias), then an 8x8/8 conv to the embedding width: stride 16 in total.

    With ``with_cp`` (set by the backbone) the stride-2 maps (64 channels at half resolution, the largest saved
    activations of the model) are recomputed in backward, but only while both BatchNorms use running statistics
    (``norm_eval``, frozen stem): recomputing a training-mode BN would update its statistics twice.
    """

    def __init__(self, in_channels: int, dim: int, stem_channels: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels)
        self.proj = PatchConv2d(stem_channels, dim, PATCH_SIZE // 2)
        self.with_cp = False
        # oneDNN runs these convolutions faster in NHWC than in NCHW on CPU, and the NHWC output is already the
        # contiguous token layout. Without the split backward: the stride-2 maps are the largest tensors of the
        # model, and the split backward's NCHW copies of them would raise the training peak
        channels_last_conv_weights(self, split_backward=False)

    def _stride2_maps(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (B, 64, H/2, W/2)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), H and W multiples of 16
        if self.with_cp and torch.is_grad_enabled() and not (self.bn1.training or self.bn2.training):
            x = torch_checkpoint.checkpoint(self._stride2_maps, x, use_reentrant=False)
        else:
            x = self._stride2_maps(x)
        return self.proj(x)  # (B, D, H/16, W/16)


class PatchEmbed(nn.Module):
    """The 16x16 patch convolution of DeepViT-16B/24B/32B (``patch_embed.proj``)."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = PatchConv2d(in_channels, dim, PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D, H/16, W/16)
        return self.proj(x)


class ReAttention(ViTAttention):
    """DeepViT's re-attention with a token-count-invariant constant term (module docstring), global or windowed.

    State-dict layout as the official ``ReAttention``: ``qkv``, ``proj``, ``reatten_matrix`` (Conv2d(H, H, 1), the
    head-mixing Theta with bias) and ``var_norm`` (BatchNorm2d(H), used through its running statistics).
    ``num_ref_tokens`` is N0, the token count the maps were trained on (197 at 224).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, window_size: int = 0,
                 transform_scale: bool = False, num_ref_tokens: int = 197, token_count_invariant: bool = True):
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, window_size=window_size, num_extra_tokens=1)
        self.scale = (dim // num_heads) ** -0.5
        self.reatten_scale = self.scale if transform_scale else 1.0
        self.reatten_matrix = nn.Conv2d(num_heads, num_heads, 1)
        self.var_norm = nn.BatchNorm2d(num_heads)
        self.num_ref_tokens = num_ref_tokens
        self.token_count_invariant = token_count_invariant

    def folded_transform(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Theta, the BN (running statistics) and ``reatten_scale`` as one affine map of the maps: the head mixing
        ``W`` (H, H) and the constant ``k`` (H,) added to every map entry (at N0 tokens)."""
        bn, theta = self.var_norm, self.reatten_matrix
        gain = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (H,)
        mix = self.reatten_scale * gain[:, None] * theta.weight[:, :, 0, 0]
        const = self.reatten_scale * ((theta.bias - bn.running_mean) * gain + bn.bias)
        return mix, const

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        nk = k.shape[2]
        mix, const = self.folded_transform()
        mix = mix.to(q.dtype)
        # constant term: k_h * N0 * mean over the keys this query sees (keys with a -inf bias are absent)
        if bias is None:
            value_sum, num_keys = v.sum(dim=2, keepdim=True), nk  # (B, H, 1, d)
        else:
            visible = torch.isfinite(bias).to(v.dtype)  # (B|1, 1, 1|Nq, Nk)
            value_sum, num_keys = visible @ v, visible.sum(dim=-1, keepdim=True)  # (B, H, 1|Nq, d)
        per_entry = const.to(v.dtype)[:, None, None] * (self.num_ref_tokens / num_keys if
                                                         self.token_count_invariant else 1.0)
        constant_term = per_entry * value_sum
        return chunked_attention(q, k, v, bias, self.scale, mix) + constant_term


class DeepViTBlock(nn.Module):
    """Pre-norm block with DeepViT's ``scale_adjustment`` s: ``x + attn(LN(s x)) / s``, ``x + mlp(LN(s x)) / s``.

    ``LN(s x)`` is computed as a LayerNorm of ``x`` with eps ``eps / s^2`` (the same function; bit-identical when s
    is a power of two, as the official 0.5), which saves a pass over the residual stream.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 norm_eps: float, window_size: int, re_attention: bool, scale_adjustment: float = 1.0,
                 transform_scale: bool = False, num_ref_tokens: int = 197, token_count_invariant: bool = True):
        super().__init__()
        self.scale_adjustment = scale_adjustment
        eps = norm_eps / scale_adjustment ** 2
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        if re_attention:
            self.attn = ReAttention(dim, num_heads, qkv_bias=qkv_bias, window_size=window_size,
                                    transform_scale=transform_scale, num_ref_tokens=num_ref_tokens,
                                    token_count_invariant=token_count_invariant)
        else:  # the official ReAttention with apply_transform=False is plain attention: SDPA
            self.attn = ViTAttention(dim, num_heads, qkv_bias=qkv_bias, window_size=window_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid_hw: Size2d) -> torch.Tensor:  # (B, 1 + gh*gw, D)
        attn_out = self.drop_path(self.attn(self.norm1(x), grid_hw))
        if self.scale_adjustment != 1.0:
            attn_out = attn_out / self.scale_adjustment
        x = x + attn_out
        mlp_out = self.drop_path(self.mlp(self.norm2(x)))
        if self.scale_adjustment != 1.0:
            mlp_out = mlp_out / self.scale_adjustment
        return x + mlp_out


# ------------------------------------------------------------------------------------------------------ backbone
@register_model
class DeepViT(SingleScaleBackbone):
    """DeepViT with re-attention that keeps its pretrained meaning at any token count, and ViTDet's simple pyramid.

    A plain ViT with its own stem and blocks on the shared single-scale machinery (padding to whole patches, class
    token and position table resized to the grid, pyramid and cropping, stages, layer depths).

    Args:
        arch: ``'16b'``, ``'24b'``, ``'32b'``, ``'s'``, ``'l'`` (official function names work too, e.g.
            ``'deepvit_patch16_224_re_attn_24b'``, ``'deepvit_S'``) or a dict with ``embed_dims``, ``depth``,
            ``num_heads`` (optional: ``num_reattention_blocks`` = depth, ``mlp_ratio`` 3, ``qkv_bias`` True,
            ``norm_eps`` 1e-6, ``cnn_stem`` False, ``transform_scale`` False, ``scale_adjustment`` 1.0).
        pretrain_img_size: resolution of the checkpoint (224; 384 for DeepViT-L-384): the position table's grid and
            the reference token count N0 = 1 + (size / 16)^2 of the re-attention maps.
        window_size: window (in tokens) of the windowed blocks; None: the pretraining grid (14 at 224), so that a
            full window plus the cls token has N0 tokens.
        window_block_indexes: blocks with windowed attention; None: all but the last block of each quarter (16
            blocks: 3, 7, 11, 15 global); ``()``: every block global (the official model at 224).
        token_count_invariant: keep each re-attention row's pretrained total mass at any token count (module
            docstring); False: the official eval-mode rule at any N (drifts away from 224).
        final_norm: apply the final LayerNorm to the tokens that feed the pyramid.
        drop_path_rate: stochastic depth, linear over the blocks (official rule).
        out_indices / frozen_stages / norm_eval / with_cp / init_cfg: see :class:`PyramidBackbone`.
    """

    arch_zoo = {
        '16b': dict(embed_dims=384, depth=16, num_heads=12, num_reattention_blocks=16),
        '24b': dict(embed_dims=384, depth=24, num_heads=12, num_reattention_blocks=24),
        '32b': dict(embed_dims=384, depth=32, num_heads=12, num_reattention_blocks=32),
        's': dict(embed_dims=396, depth=16, num_heads=12, num_reattention_blocks=5, cnn_stem=True,
                  transform_scale=True, scale_adjustment=0.5),
        'l': dict(embed_dims=420, depth=32, num_heads=12, num_reattention_blocks=12, cnn_stem=True,
                  scale_adjustment=0.5),
    }
    arch_aliases = {'deepvit-16': '16b', 'deepvit_patch16_224_re_attn_16b': '16b', 'deepvit-24': '24b',
                    'deepvit_patch16_224_re_attn_24b': '24b', 'deepvit-32': '32b',
                    'deepvit_patch16_224_re_attn_32b': '32b', 'deepvit_s': 's', 'deepvit_l': 'l',
                    'deepvit_l_384': 'l'}
    essential_keys = ('embed_dims', 'depth', 'num_heads')
    # num_reattention_blocks None: every block re-attends
    arch_defaults = dict(mlp_ratio=3.0, qkv_bias=True, norm_eps=1e-6, num_reattention_blocks=None, cnn_stem=False,
                         transform_scale=False, scale_adjustment=1.0)
    official_weights = {
        '16b': OfficialWeights('16b', '', _LICENSE, 79.1, mean=HALF, std=HALF,
                               note='"coming soon" in the official README'),
        '24b': OfficialWeights('24b', _DRIVE.format('1lPmKdNMPJq-mq-4FivqIY4JNAPoQHYxV'), _LICENSE, 79.99,
                               mean=HALF, std=HALF),
        '32b': OfficialWeights('32b', _DRIVE.format('1kUBrAbAQfMT5FQJprITRxDtOE6ECZM0M'), _LICENSE, 80.9,
                               mean=HALF, std=HALF, note='link reported dead (dvit_repo#10)'),
        's': OfficialWeights('s', _DRIVE.format('1evhBjla4Nth7LawW2PAXnGEcpv3YBWEC'), _LICENSE, 82.3,
                             mean=HALF, std=HALF, file='DViT_82_16b.pth.tar'),
        'l': OfficialWeights('l', _DRIVE.format('1MTRm0NK_sPGRSyuD_hHJ1Zgw2diEaKLR'), _LICENSE, 83.1,
                             mean=HALF, std=HALF, file='DViT_83_32b.pth.tar'),
    }
    weights_note = 'Google Drive only (zhoudaquan/dvit_repo README); DeepViT-L at 384 is not released.'
    stem_names = ('patch_embed', 'cls_token', 'pos_embed')

    def __init__(self, arch: Union[str, dict] = 's', in_channels: int = 3, pretrain_img_size: int = 224,
                 window_size: Optional[int] = None, window_block_indexes: Optional[Sequence[int]] = None,
                 token_count_invariant: bool = True, final_norm: bool = True, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = self.arch_settings
        dim, depth, heads = int(settings['embed_dims']), int(settings['depth']), int(settings['num_heads'])
        if dim <= 0 or depth <= 0 or heads <= 0 or dim % heads or dim % 4:
            raise ValueError(f'DeepViT: embed_dims ({dim}) must be a positive multiple of num_heads ({heads}) and of '
                             f'4 (pyramid widths D/4, D/2), depth ({depth}) positive')
        num_reattention = depth if settings['num_reattention_blocks'] is None else \
            int(settings['num_reattention_blocks'])
        if not 0 <= num_reattention <= depth:
            raise ValueError(f'DeepViT: num_reattention_blocks must be in [0, depth={depth}] (the last blocks '
                             f're-attend), got {num_reattention}')
        scale_adjustment = float(settings['scale_adjustment'])
        if scale_adjustment <= 0:
            raise ValueError(f'DeepViT: scale_adjustment must be positive, got {scale_adjustment}')
        if not isinstance(pretrain_img_size, int) or pretrain_img_size < PATCH_SIZE:
            raise ValueError(f'DeepViT: pretrain_img_size must be an int >= {PATCH_SIZE}, got {pretrain_img_size!r}')
        grid = pretrain_img_size // PATCH_SIZE
        window_size = grid if window_size is None else window_size
        if window_block_indexes is None:  # ViTDet's layout: the last block of each quarter is global
            global_blocks = {max(0, round(depth * q / 4) - 1) for q in range(1, 5)}
            window_block_indexes = [i for i in range(depth) if i not in global_blocks]
        window_block_indexes = tuple(sorted({int(i) % depth for i in window_block_indexes}))
        if not isinstance(window_size, int) or window_size < 0 or (window_block_indexes and window_size == 0):
            raise ValueError(f'DeepViT: window_size must be a positive int when window_block_indexes is set, got '
                             f'{window_size!r} (use window_block_indexes=() for global attention everywhere)')
        self.check_drop_path_rate(drop_path_rate)

        self.embed_dims = dim
        self.depth = depth
        self.num_layers = depth
        self.patch_size = PATCH_SIZE
        self.pretrain_grid: Size2d = (grid, grid)
        self.num_ref_tokens = 1 + grid * grid
        self.window_size = window_size
        self.window_block_indexes = window_block_indexes
        self.reattention_blocks = tuple(range(depth - num_reattention, depth))
        norm_eps = float(settings['norm_eps'])

        # stem: patch embedding, cls token, position table over the pretraining grid (+ cls)
        if settings['cnn_stem']:
            self.patch_embed = ConvPatchEmbed(in_channels, dim)
            self.patch_embed.with_cp = with_cp
        else:
            self.patch_embed = PatchEmbed(in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_ref_tokens, dim))
        rates = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()  # (also under a meta device)
        self.blocks = nn.ModuleList([
            DeepViTBlock(dim, heads, float(settings['mlp_ratio']), bool(settings['qkv_bias']),
                         drop_path=rates[i], norm_eps=norm_eps,
                         window_size=window_size if i in window_block_indexes else 0,
                         re_attention=i in self.reattention_blocks, scale_adjustment=scale_adjustment,
                         transform_scale=bool(settings['transform_scale']),
                         num_ref_tokens=self.num_ref_tokens, token_count_invariant=token_count_invariant)
            for i in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else None
        self.pyramid = SimpleFeaturePyramid(dim, levels=self.out_indices)  # branches of returned levels only
        self.out_channels: Tuple[int, ...] = self.pyramid.out_channels

        self.register_load_state_dict_pre_hook(self.resize_pos_embed_on_load)
        self._init_parameters()
        self._freeze_stages()

    def _init_parameters(self) -> None:
        """Official initialisation (trunc-normal tables and Linear weights); Theta starts as the identity with zero
        bias, i.e. plain attention (the author: identity or random init train alike, dvit_repo#1). Used when
        training from scratch; checkpoints overwrite it."""
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_linear_and_layernorm)
        for i in self.reattention_blocks:
            theta = self.blocks[i].attn.reatten_matrix
            nn.init.eye_(theta.weight[:, :, 0, 0])
            nn.init.zeros_(theta.bias)

    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """The official keys are the module's own; the classifier ``head`` is dropped. Idempotent."""
        return {k: v for k, v in state_dict.items() if not k.startswith(('head.', 'head_drop.'))}

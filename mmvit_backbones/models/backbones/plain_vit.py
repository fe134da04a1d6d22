"""Plain (single-scale) Vision Transformer of DINO as a 4-level dense-prediction backbone.

Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (ICCV 2021),
facebookresearch/dino ``vision_transformer.py`` (itself timm's ViT: pre-norm blocks, cls token, learned absolute
position embedding, final LayerNorm, LayerNorm eps 1e-6, ``qkv_bias=True``).

The ViT has one token grid at stride ``patch_size``. Dense prediction needs strides 4/8/16/32, which ViTDet's simple
feature pyramid (Li et al. 2022; :class:`SimpleFeaturePyramid`) builds from a single stride-16 map: two/one stride-2
deconvolutions up, identity, max-pool down. What this module adds to the classifier:

* **any input size** (non-square, not a multiple of the patch): the image is zero-padded at the bottom/right to a
  multiple of ``patch_size`` (DINO's patch convolution drops the remainder pixels instead; we pad so that the
  border is seen and level ``i`` has exactly ``ceil(H / 2**(i+2))`` cells), and the position embedding is resized to
  the actual token grid, the cls position kept, cached per grid size (:class:`SizeCache`). The default resize is
  DINO's own (``interpolate_pos_encoding``: bicubic with ``scale_factor = (grid + 0.1) / pretrain_grid``), which
  DINO checkpoints need for exact parity; ``pos_embed_interp='bicubic'`` resizes to the target size instead (timm's
  and DeiT's rule, for their checkpoints).
* **patch 8**: the stride-8 token map is average-pooled 2x2 to stride 16 before the pyramid, so the adapter (and
  its channel widths ``D/4, D/2, D, D``) is the same for patch 8 and 16; the deconvolutions recover strides 8 and 4.
* **which block feeds the pyramid** (``feature_block``, default the last) and whether DINO's final LayerNorm is
  applied to it (``final_norm``). Blocks after ``feature_block`` are not built (their checkpoint entries are
  reported as unused).
* **optional windowed attention** (ViTDet, for 1024+ inputs): blocks in ``window_block_indexes`` attend within
  non-overlapping ``window_size`` x ``window_size`` windows of the patch grid (padded to whole windows, padded keys
  masked). The cls token stays global: it is a key of every window, and its own query attends to all tokens. No
  weight is added or changed, so the same checkpoints load. The blocks are the shared
  :class:`~mmvit_backbones.models.layers.ViTBlock` (also used by T2T-ViT).
* ``frozen_stages``: stage 0 is the stem (patch embedding, cls token, position embedding); the blocks are split
  into 4 stages of consecutive quarters of the blocks built (ViT-S/B: blocks 0-2, 3-5, 6-8, 9-11); the final norm
  belongs to stage 4.
* layer depth for layer-wise lr decay: stem 0, block ``i`` ``i + 1``, final norm and pyramid ``depth + 1``.

Checkpoints (all through :meth:`convert_checkpoint`): DINO backbone files (flat, as published), DINO full training
checkpoints (``{'student', 'teacher', ...}``: the teacher is taken, its ``backbone.`` sub-tree kept), DeiT/timm ViT
checkpoints of the same shape (``model`` wrapper, classifier head and distillation token dropped).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from ...registry import register_model
from ..layers import PatchConv2d, SimpleFeaturePyramid, Size2d, ViTBlock, init_linear_and_layernorm
from .base import OfficialWeights
from .single_scale import POS_EMBED_INTERP_MODES, SingleScaleBackbone

_DINO = 'https://dl.fbaipublicfiles.com/dino/'
# checkpoint entries of the classification/DINO heads that a backbone never uses
_HEAD_PREFIXES = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.', 'head_drop.')


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution (DINO ``PatchEmbed.proj``)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = PatchConv2d(in_channels, dim, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), H and W multiples of the patch
        return self.proj(x)  # (B, D, H/p, W/p)


@register_model
class PlainViT(SingleScaleBackbone):
    """DINO's plain ViT with ViTDet's simple feature pyramid (strides 4/8/16/32).

    Args:
        arch: ``'ti'``/``'s'``/``'b'`` (DINO ``vit_tiny``/``vit_small``/``vit_base``) or a dict with ``embed_dims``,
            ``depth``, ``num_heads`` (optional ``mlp_ratio`` 4, ``qkv_bias`` True, ``norm_eps`` 1e-6).
        patch_size: 16 or 8 (DINO publishes both); must match the checkpoint.
        pretrain_img_size: resolution of the checkpoint's position embedding (224 for DINO/DeiT); a checkpoint made
            at another size is resized on load.
        pos_embed_interp: ``'dino'`` (DINO's ``scale_factor = (grid + 0.1) / pretrain_grid`` bicubic resize; use with
            DINO checkpoints) or ``'bicubic'`` (resize to the target size: timm/DeiT).
        feature_block: index of the block whose output feeds the pyramid (negative counts from the end).
        final_norm: apply the final LayerNorm (DINO ``norm``) to that output.
        window_size: window of the windowed-attention blocks (0: every block global).
        window_block_indexes: blocks that use windowed attention (ViTDet ViT-B: all but 2, 5, 8, 11).
        drop_path_rate: stochastic depth, increasing linearly over the blocks (DINO's rule).
        out_indices: pyramid levels returned (0: stride 4 ... 3: stride 32).
        frozen_stages: -1 nothing; 0 the stem; i the stem and the first i quarters of the blocks (4: also the norm).
    """

    arch_zoo = {
        'ti': dict(embed_dims=192, depth=12, num_heads=3),
        's': dict(embed_dims=384, depth=12, num_heads=6),
        'b': dict(embed_dims=768, depth=12, num_heads=12),
    }
    arch_aliases = {'tiny': 'ti', 'vit-ti': 'ti', 'vit_tiny': 'ti', 'small': 's', 'vit-s': 's', 'vit_small': 's',
                    'base': 'b', 'vit-b': 'b', 'vit_base': 'b'}
    essential_keys = ('embed_dims', 'depth', 'num_heads')
    arch_defaults = dict(mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-6)
    official_weights = {
        's16': OfficialWeights('s', _DINO + 'dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth', 'Apache-2.0',
                               77.0, note='self-supervised; top-1 of the linear probe'),
        's8': OfficialWeights('s', _DINO + 'dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth', 'Apache-2.0',
                              79.7, kwargs=dict(patch_size=8), note='self-supervised; top-1 of the linear probe'),
        'b16': OfficialWeights('b', _DINO + 'dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth', 'Apache-2.0',
                               78.2, note='self-supervised; top-1 of the linear probe'),
        'b8': OfficialWeights('b', _DINO + 'dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth', 'Apache-2.0', 80.1,
                              kwargs=dict(patch_size=8), note='self-supervised; top-1 of the linear probe'),
    }
    weights_note = ('DINO full checkpoints (*_full_checkpoint.pth, the teacher is used) and DeiT/timm ViT files of '
                    'the same shape load too (pos_embed_interp=\'bicubic\' for those).')
    stem_names = ('patch_embed', 'cls_token', 'pos_embed')

    def __init__(self, arch: Union[str, dict] = 's', patch_size: int = 16, in_channels: int = 3,
                 pretrain_img_size: int = 224, pos_embed_interp: str = 'dino', feature_block: int = -1,
                 final_norm: bool = True, window_size: int = 0, window_block_indexes: Sequence[int] = (),
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = self.arch_settings
        dim, depth, heads = int(settings['embed_dims']), int(settings['depth']), int(settings['num_heads'])
        if dim <= 0 or depth <= 0 or heads <= 0 or dim % heads or dim % 4:
            raise ValueError(f'PlainViT: embed_dims ({dim}) must be a positive multiple of num_heads ({heads}) and '
                             f'of 4 (pyramid widths D/4, D/2), depth ({depth}) positive')
        if patch_size not in (8, 16):
            raise ValueError(f'PlainViT: patch_size must be 16 or 8 (the published DINO/DeiT models), got '
                             f'{patch_size!r}')
        if not isinstance(pretrain_img_size, int) or pretrain_img_size < patch_size:
            raise ValueError(f'PlainViT: pretrain_img_size must be an int >= patch_size, got {pretrain_img_size!r}')
        if pos_embed_interp not in POS_EMBED_INTERP_MODES:
            raise ValueError(f'PlainViT: pos_embed_interp must be one of {POS_EMBED_INTERP_MODES}, got '
                             f'{pos_embed_interp!r}')
        window_block_indexes = tuple(i % depth if isinstance(i, int) else i for i in window_block_indexes)
        num_blocks, window_block_indexes = self.check_block_args(depth, feature_block, window_size,
                                                                 window_block_indexes, drop_path_rate)

        self.embed_dims = dim
        self.depth = depth
        self.patch_size = patch_size
        self.pos_embed_interp = pos_embed_interp
        self.final_norm = final_norm
        self.pretrain_grid: Size2d = (pretrain_img_size // patch_size, ) * 2
        self.num_layers = num_blocks

        # stem: patch embedding, cls token, absolute position embedding over the pretraining grid (+ cls)
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid[0] * self.pretrain_grid[1], dim))
        # DINO's stochastic-depth rule over the full depth, so a truncated model keeps each block's rate
        rates = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()  # (also under a meta device)
        self.blocks = nn.ModuleList([
            ViTBlock(dim, heads, float(settings['mlp_ratio']), bool(settings['qkv_bias']),
                     drop_path=rates[i], norm_eps=float(settings['norm_eps']),
                     window_size=window_size if i in window_block_indexes else 0) for i in range(num_blocks)])
        self.norm = nn.LayerNorm(dim, eps=float(settings['norm_eps'])) if final_norm else None
        self.pyramid = SimpleFeaturePyramid(dim, levels=self.out_indices)  # branches of returned levels only
        self.out_channels: Tuple[int, ...] = self.pyramid.out_channels

        self.register_load_state_dict_pre_hook(self.resize_pos_embed_on_load)
        self._init_parameters()
        self._freeze_stages()

    def _init_parameters(self) -> None:
        """DINO's initialisation (used when training from scratch; checkpoints overwrite it)."""
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_linear_and_layernorm)

    # ------------------------------------------------------------------------------------------------------ forward
    def forward_feature(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[()]]:
        feature, fine_maps = super().forward_feature(x)
        if self.patch_size == 8:  # stride 8 -> 16; ceil_mode keeps ceil(H/16) cells for odd grids
            feature = F.avg_pool2d(feature, kernel_size=2, stride=2, ceil_mode=True)
        return feature, fine_maps

    # -------------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """DINO/DeiT/timm ViT layout -> ours (the same names): drop classifier/DINO heads; a distilled DeiT's
        ``dist_token`` and its position (row 1 of ``pos_embed``) are dropped too. Idempotent."""
        out = {k: v for k, v in state_dict.items() if not k.startswith(_HEAD_PREFIXES)}
        if 'dist_token' in out:
            out.pop('dist_token')
            if 'pos_embed' in out:
                pos = out['pos_embed']
                out['pos_embed'] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
        return out

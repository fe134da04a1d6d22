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
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from ...testing.parity import ParityAdapter, register_parity_adapter
from ...registry import register_model
from ..layers import (PatchConv2d, SimpleFeaturePyramid, SizeCache, ViTBlock, init_linear_and_layernorm,
                      resize_grid_embed, tokens_to_map)
from ..layers.traceable import ceil_div, is_exporting, pad_to_multiple
from .base import PyramidBackbone

Size2d = Tuple[int, int]

# Checkpoint entries of the classification/DINO heads that a backbone never uses.
_HEAD_PREFIXES = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.', 'head_drop.')
_POS_INTERP_MODES = ('dino', 'bicubic')


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution (DINO ``PatchEmbed.proj``)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = PatchConv2d(in_channels, dim, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), H and W multiples of the patch
        return self.proj(x)  # (B, D, H/p, W/p)


def _resize_pos_embed_pre_hook(module: 'PlainViT', state_dict: dict, prefix: str, *args) -> None:
    """Load-time: a checkpoint made at another resolution than the model was built for is resized to the model's
    pretraining grid (cls position kept) with the model's interpolation rule."""
    key = prefix + 'pos_embed'
    if key not in state_dict:
        return
    pos = state_dict[key]
    if pos.dim() != 3 or tuple(pos.shape) == tuple(module.pos_embed.shape) or pos.shape[-1] != module.embed_dims:
        return  # same shape, or another model's tensor: load_state_dict reports the mismatch
    n = pos.shape[1]
    if _is_square(n - 1):
        extra = 1
    elif _is_square(n):  # a table without a cls position (e.g. ViTDet/MAE-style exports): use a zero cls position
        pos, extra = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1), 1
    else:
        raise ValueError(f'{type(module).__name__}: checkpoint pos_embed {tuple(pos.shape)} is not a square grid '
                         f'(+ cls token); cannot resize it to {tuple(module.pos_embed.shape)}')
    src = math.isqrt(pos.shape[1] - extra)
    state_dict[key] = module.resize_pos_embed(pos, (src, src), module.pretrain_grid)


@register_model
class PlainViT(PyramidBackbone):
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
        **dict.fromkeys(['ti', 'tiny', 'vit-ti', 'vit_tiny'], dict(embed_dims=192, depth=12, num_heads=3)),
        **dict.fromkeys(['s', 'small', 'vit-s', 'vit_small'], dict(embed_dims=384, depth=12, num_heads=6)),
        **dict.fromkeys(['b', 'base', 'vit-b', 'vit_base'], dict(embed_dims=768, depth=12, num_heads=12)),
    }
    essential_keys = ('embed_dims', 'depth', 'num_heads')
    weights_hint = ('DINO backbone weights, e.g. ViT-S/16 '
                    'https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth '
                    '(ViT-S/8: dino_deitsmall8_pretrain, ViT-B/16: dino_vitbase16_pretrain, ViT-B/8: '
                    'dino_vitbase8_pretrain, same URL pattern; facebookresearch/dino README). DINO full checkpoints '
                    '(*_full_checkpoint.pth, teacher used) and DeiT/timm ViT files of the same shape load too.')
    new_param_prefixes = ('pyramid.', )

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
        if pos_embed_interp not in _POS_INTERP_MODES:
            raise ValueError(f'PlainViT: pos_embed_interp must be one of {_POS_INTERP_MODES}, got '
                             f'{pos_embed_interp!r}')
        if not isinstance(feature_block, int) or not -depth <= feature_block < depth:
            raise ValueError(f'PlainViT: feature_block must be a block index in [{-depth}, {depth - 1}], got '
                             f'{feature_block!r}')
        num_blocks = feature_block % depth + 1
        window_block_indexes = tuple(i % depth for i in window_block_indexes)
        if not isinstance(window_size, int) or window_size < 0 or (window_block_indexes and window_size == 0):
            raise ValueError(f'PlainViT: window_size must be a positive int when window_block_indexes is set, got '
                             f'{window_size!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'PlainViT: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')

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
            ViTBlock(dim, heads, float(settings.get('mlp_ratio', 4.0)), bool(settings.get('qkv_bias', True)),
                     drop_path=rates[i], norm_eps=float(settings.get('norm_eps', 1e-6)),
                     window_size=window_size if i in window_block_indexes else 0) for i in range(num_blocks)])
        self.norm = nn.LayerNorm(dim, eps=float(settings.get('norm_eps', 1e-6))) if final_norm else None
        self.pyramid = SimpleFeaturePyramid(dim, levels=self.out_indices)  # branches of returned levels only
        self.out_channels: Tuple[int, ...] = self.pyramid.out_channels

        self._pos_cache = SizeCache()
        self.register_load_state_dict_pre_hook(_resize_pos_embed_pre_hook)
        self._init_parameters()
        self._freeze_stages()

    def _init_parameters(self) -> None:
        """DINO's initialisation (used when training from scratch; checkpoints overwrite it)."""
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_linear_and_layernorm)

    # ------------------------------------------------------------------------------------------ position embedding
    def resize_pos_embed(self, pos: torch.Tensor, src_hw: Size2d, dst_hw: Size2d) -> torch.Tensor:
        """(1, 1 + src grid, D) -> (1, 1 + dst grid, D) with this model's rule; the cls position is kept."""
        return resize_grid_embed(pos, src_hw, dst_hw, num_extra_tokens=1, mode='bicubic',
                                 scale_factor_rule=self.pos_embed_interp == 'dino')

    def pos_embed_for(self, grid_hw: Size2d) -> torch.Tensor:
        """Position embedding (1, 1 + gh*gw, D) for a token grid; cached per grid at inference."""
        grid_hw = tuple(grid_hw)
        if not is_exporting() and grid_hw == self.pretrain_grid:  # (a traced grid: resize_grid_embed decides)
            return self.pos_embed
        return self._pos_cache.get(grid_hw, [self.pos_embed],
                                   lambda: self.resize_pos_embed(self.pos_embed, self.pretrain_grid, grid_hw))

    # ------------------------------------------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d]:
        """(B, C, H, W) image -> tokens (B, 1 + gh*gw, D) with cls first, and the grid (gh, gw) = ceil(H/p, W/p)."""
        p = self.patch_size
        h, w = x.shape[-2:]
        pad_h, pad_w = pad_to_multiple(h, p), pad_to_multiple(w, p)
        if is_exporting() or pad_h or pad_w:  # zero-pad bottom/right to whole patches (DINO drops the remainder)
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed(x)  # (B, D, gh, gw)
        grid_hw = (x.shape[-2], x.shape[-1])
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        return tokens + self.pos_embed_for(grid_hw), grid_hw

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        if x.shape[0] == 0:
            return self.empty_outputs(x)
        h, w = x.shape[-2:]
        tokens, (gh, gw) = self.embed(x)
        for block in self.blocks:
            tokens = self.checkpoint(block, tokens, (gh, gw))
        if self.norm is not None:
            tokens = self.norm(tokens)
        b, _, d = tokens.shape
        feature = tokens_to_map(tokens[:, 1:], (gh, gw))  # drop cls: (B, D, H/p, W/p)
        if self.patch_size == 8:  # stride 8 -> 16; ceil_mode keeps ceil(H/16) cells for odd grids
            feature = F.avg_pool2d(feature, kernel_size=2, stride=2, ceil_mode=True)
        outs = self.pyramid(feature, levels=self.out_indices)
        # the grid was padded to whole patches: crop each level to ceil(size / stride)
        return tuple(out[..., :ceil_div(h, 2 ** (level + 2)), :ceil_div(w, 2 ** (level + 2))]
                     for level, out in zip(self.out_indices, outs))

    # ----------------------------------------------------------------------------------------------------- training
    def stage_blocks(self, stage: int) -> range:
        """Blocks of stage ``stage`` (1..4): consecutive quarters of the blocks built."""
        n = len(self.blocks)
        return range(round(n * (stage - 1) / 4), round(n * stage / 4))

    def frozen_modules(self, frozen_stages: int) -> Iterable[Union[nn.Module, nn.Parameter]]:
        modules: List[Union[nn.Module, nn.Parameter]] = [self.patch_embed, self.cls_token, self.pos_embed]
        for stage in range(1, frozen_stages + 1):
            modules += [self.blocks[i] for i in self.stage_blocks(stage)]
        if frozen_stages == self.num_stages and self.norm is not None:
            modules.append(self.norm)
        return modules

    def layer_depth(self, name: str) -> int:
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed.'):
            return 0
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1
        return self.num_layers + 1

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


# ------------------------------------------------------------------------------------------------------------ parity
@register_parity_adapter('vit_dino')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any fixture of DINO's ``vision_transformer.py``: variant read from the state-dict shapes.

    Outputs: ``block{i}`` (block i's tokens, cls dropped, (B, D, gh, gw)), ``norm`` (final LayerNorm, same layout),
    ``cls`` (the normed cls token = DINO's ``model(x)`` with ``num_classes=0``). DINO's patch convolution drops the
    remainder pixels of a size that is not a multiple of the patch, so the input is cropped to whole patches first.
    """
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    dim, _, patch, _ = shapes['patch_embed.proj.weight']
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    variant = str(fixture.get('variant', '')).lower()
    heads = PlainViT.arch_zoo[variant]['num_heads'] if variant in PlainViT.arch_zoo and \
        PlainViT.arch_zoo[variant]['embed_dims'] == dim else max(1, dim // 64)  # every DINO/DeiT ViT: 64 per head
    arch = dict(embed_dims=dim, depth=depth, num_heads=heads, mlp_ratio=shapes['blocks.0.mlp.fc1.weight'][0] / dim,
                qkv_bias='blocks.0.attn.qkv.bias' in shapes)
    grid = math.isqrt(shapes['pos_embed'][1] - 1)
    block_ids = sorted(int(name[5:]) for name in fixture['outputs'] if name.startswith('block'))

    def build() -> nn.Module:
        return PlainViT(arch=arch, patch_size=patch, pretrain_img_size=grid * patch, pos_embed_interp='dino',
                        final_norm=True)

    def outputs(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        gh, gw = h // patch, w // patch
        x = x[..., :gh * patch, :gw * patch]
        captured: Dict[str, torch.Tensor] = {}
        hooks = [model.blocks[i].register_forward_hook(
            lambda _m, _i, out, i=i: captured.__setitem__(f'block{i}', out)) for i in block_ids]
        hooks.append(model.norm.register_forward_hook(lambda _m, _i, out: captured.__setitem__('norm', out)))
        original = model.pos_embed.detach().clone()
        if (gh, gw) == model.pretrain_grid and h != w:
            # DINO only skips its resize when the token count matches AND the image is square; otherwise it resizes
            # even a grid onto itself with scale (g + 0.1) / g, which shifts the samples slightly.
            with torch.no_grad():
                model.pos_embed.copy_(_dino_self_resample(model.pos_embed, gh))
        try:
            model(x)
        finally:
            for hook in hooks:
                hook.remove()
            with torch.no_grad():
                model.pos_embed.copy_(original)
        result = {name: tokens_to_map(t[:, 1:], (gh, gw)) for name, t in captured.items()}
        result['cls'] = captured['norm'][:, 0]
        return result

    return ParityAdapter(build=build, outputs=outputs)


def _dino_self_resample(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding`` for a non-square image whose token grid equals the pretraining grid."""
    patch_pos = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    scale = (grid + 0.1) / grid
    patch_pos = F.interpolate(patch_pos, scale_factor=(scale, scale), mode='bicubic')
    return torch.cat([pos[:, :1], patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)

"""The single-scale backbones: one token grid, and ViTDet's simple feature pyramid built from it.

PlainViT, DeepViT, T2T-ViT, TNT, MLP-Mixer and ResMLP compute a single map (stride 16, or their patch size) and build
strides 4/8/16/32 from it with :class:`~mmvit_backbones.models.layers.SimpleFeaturePyramid` (Li et al., "Exploring
Plain Vision Transformer Backbones for Object Detection", 2022). What they share is written here once:

* the image is zero-padded at the bottom/right to whole patches (the official patch embeddings drop the remainder
  pixels instead; padding lets every pixel be seen, and after the crop of :meth:`PyramidBackbone.forward` every
  level has exactly ``ceil(H / stride)`` cells);
* the blocks run on the token grid, the final norm follows, the grid becomes an NCHW map for the pyramid
  (:meth:`SingleScaleBackbone.forward_feature`; families with another kind of block override it);
* the class-token position table is resized to the actual token grid, cached per size, and a checkpoint made at
  another resolution is resized on load;
* ``frozen_stages``: stage 0 is the stem (``stem_names``), stages 1-4 are consecutive quarters of the blocks built,
  the final norm goes with stage 4; layer depths for layer-wise lr decay: stem 0, block ``i`` ``i + 1``, everything
  after the blocks ``num_layers + 1``.

:class:`AllMlpBackbone` adds what MLP-Mixer and ResMLP share (a patch stem and token-mixing blocks on a
channels-last grid, no class token).
"""
import math
import re
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import to_2tuple

from ...checkpoint import CheckpointError
from ..layers import (
    TOKEN_MIXING_MODES,
    PatchConv2d,
    SimpleFeaturePyramid,
    Size2d,
    SizeCache,
    resize_grid_embed,
    tokens_to_map,
)
from ..layers.traceable import is_exporting, pad_to_multiple
from .base import PyramidBackbone

POS_EMBED_INTERP_MODES = ('dino', 'bicubic')


class SingleScaleBackbone(PyramidBackbone):
    """Base of the single-scale families (module docstring).

    Subclasses build ``blocks`` (``block(tokens, grid)``), ``norm`` (or None) and ``pyramid``, set ``num_layers``,
    name their stem in ``stem_names`` and implement :meth:`embed`; a class-token family also has a position table
    (``pos_embed_name``, over ``pretrain_grid`` plus the class token).
    """

    patch_size: int = 16
    stem_names: Tuple[str, ...] = ()
    new_param_prefixes = ('pyramid.', )
    num_extra_tokens: int = 1  # tokens before the grid (the class token)
    pos_embed_name: str = 'pos_embed'
    pos_embed_interp: str = 'bicubic'  # 'dino': DINO's scale-factor resize (its checkpoints need it for parity)
    pretrain_grid: Size2d

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pos_cache = SizeCache()

    @classmethod
    def check_block_args(cls, depth: int, feature_block: int, window_size: int, window_block_indexes: Sequence[int],
                         drop_path_rate: float) -> Tuple[int, Tuple[int, ...]]:
        """Checks of the block arguments; returns (blocks built, window block indexes)."""
        name = cls.__name__
        if not isinstance(feature_block, int) or not -depth <= feature_block < depth:
            raise ValueError(f'{name}: feature_block must be a block index in [{-depth}, {depth - 1}], '
                             f'got {feature_block!r}')
        num_blocks = feature_block % depth + 1
        if not isinstance(window_size, int) or window_size < 0:
            raise ValueError(f'{name}: window_size must be an int >= 0, got {window_size!r}')
        window_block_indexes = tuple(window_block_indexes)
        if window_block_indexes and not window_size:
            raise ValueError(f'{name}: window_block_indexes {window_block_indexes} need a window_size > 0')
        if any(not isinstance(i, int) or not 0 <= i < num_blocks for i in window_block_indexes):
            raise ValueError(f'{name}: window_block_indexes must be block indices in [0, {num_blocks - 1}], '
                             f'got {window_block_indexes}')
        cls.check_drop_path_rate(drop_path_rate)
        return num_blocks, window_block_indexes

    # ------------------------------------------------------------------------------------------------------ forward
    def pad_to_patches(self, x: torch.Tensor, multiple: Optional[int] = None) -> torch.Tensor:
        """Zero-pad (B, C, H, W) at the bottom/right to a multiple of ``multiple`` (default the patch size)."""
        multiple = multiple or self.patch_size
        pad_h, pad_w = pad_to_multiple(x.shape[-2], multiple), pad_to_multiple(x.shape[-1], multiple)
        if is_exporting() or pad_h or pad_w:  # a traced size always pads, possibly by 0
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d, Sequence[torch.Tensor]]:
        """(B, C, H, W) -> the tokens the first block takes, their grid and the pyramid's fine maps (or ()).

        This one: ``patch_embed`` on the image padded to whole patches, then the class token and the position table
        (B, 1 + gh*gw, D) on the grid (gh, gw) = (ceil(H / p), ceil(W / p)).
        """
        x = self.patch_embed(self.pad_to_patches(x))  # (B, D, gh, gw)
        grid = (x.shape[-2], x.shape[-1])
        return self.with_class_token(x.flatten(2).transpose(1, 2), grid), grid, ()

    def forward_feature(self, x: torch.Tensor) -> Tuple[torch.Tensor, Sequence[torch.Tensor]]:
        """The pyramid's input map (B, D, gh, gw) and fine maps: embed, blocks, final norm, extra tokens dropped."""
        tokens, grid, fine_maps = self.embed(x)
        for block in self.blocks:
            tokens = self.checkpoint(block, tokens, grid)
        if self.norm is not None:
            tokens = self.norm(tokens)
        return tokens_to_map(tokens[:, self.num_extra_tokens:], grid), fine_maps

    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        feature, fine_maps = self.forward_feature(x)
        return self.pyramid(feature, fine_maps=fine_maps, levels=self.out_indices)

    # ------------------------------------------------------------------------------------------- position table
    def resize_pos_embed(self, pos: torch.Tensor, src_hw: Size2d, dst_hw: Size2d) -> torch.Tensor:
        """(1, 1 + src grid, D) -> (1, 1 + dst grid, D) with this model's rule; the class position is kept."""
        return resize_grid_embed(pos, src_hw, dst_hw, num_extra_tokens=1, mode='bicubic',
                                 scale_factor_rule=self.pos_embed_interp == 'dino')

    def position_embedding(self, grid: Size2d) -> torch.Tensor:
        """The position table (1, 1 + gh*gw, D) for a token grid; resized tables are cached per grid."""
        table = getattr(self, self.pos_embed_name)
        grid = tuple(grid)
        if not is_exporting() and grid == tuple(self.pretrain_grid):  # (a traced grid: resize_grid_embed decides)
            return table
        return self._pos_cache.get(grid, [table], lambda: self.resize_pos_embed(table, self.pretrain_grid, grid))

    def with_class_token(self, tokens: torch.Tensor, grid: Size2d) -> torch.Tensor:
        """(B, gh*gw, D) grid tokens -> (B, 1 + gh*gw, D): ``cls_token`` first, the position table added."""
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.position_embedding(grid)

    @staticmethod
    def resize_pos_embed_on_load(module: 'SingleScaleBackbone', state_dict: dict, prefix: str, *args) -> None:
        """``load_state_dict`` pre-hook: a table made at another resolution (a square grid, with or without the
        class position) is resized to the model's pretraining grid with the model's rule. A table without a class
        position (ViTDet/MAE-style exports) gets a zero one."""
        key = prefix + module.pos_embed_name
        own = getattr(module, module.pos_embed_name)
        pos = state_dict.get(key)
        if pos is None or pos.dim() != 3 or tuple(pos.shape) == tuple(own.shape) or pos.shape[-1] != own.shape[-1]:
            return  # same shape, or another model's tensor: load_state_dict reports the mismatch
        n = pos.shape[1]
        if not _is_square(n - 1):
            if not _is_square(n):
                raise ValueError(f'{type(module).__name__}: checkpoint {module.pos_embed_name} {tuple(pos.shape)} is '
                                 f'not a square grid (+ class token); cannot resize it to {tuple(own.shape)}')
            pos = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)
        side = math.isqrt(pos.shape[1] - 1)
        state_dict[key] = module.resize_pos_embed(pos, (side, side), module.pretrain_grid)

    # ----------------------------------------------------------------------------------------------------- training
    def stage_blocks(self, stage: int) -> range:
        """Blocks of stage ``stage`` (1..4): consecutive quarters of the blocks built."""
        n = len(self.blocks)
        return range(n * (stage - 1) // 4, n * stage // 4)

    def frozen_modules(self, frozen_stages: int) -> Iterable[Union[nn.Module, nn.Parameter]]:
        modules: List[Union[nn.Module, nn.Parameter]] = [getattr(self, name) for name in self.stem_names]
        for stage in range(1, frozen_stages + 1):
            modules += [self.blocks[i] for i in self.stage_blocks(stage)]
        if frozen_stages == self.num_stages and self.norm is not None:
            modules.append(self.norm)
        return modules

    def layer_depth(self, name: str) -> int:
        if name.split('.')[0] in self.stem_names:
            return 0
        match = re.match(r'blocks\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1
        return self.num_layers + 1


class AllMlpBackbone(SingleScaleBackbone):
    """What MLP-Mixer and ResMLP share: patch stem, token-mixing blocks on the (B, gh, gw, C) grid, final norm,
    simple feature pyramid from the token map, stages, layer depth, the token-grid check of checkpoints.

    Subclasses build ``self.blocks`` (each ``block(x)`` on a (B, gh, gw, C) grid) and ``self.norm`` in their
    ``__init__`` after calling :meth:`_build_common`, and name in ``token_weight_name`` the block parameter whose
    first dimension is the number of tokens (for the grid check of checkpoints).
    """

    stem_names = ('stem', )
    num_extra_tokens = 0
    token_weight_name = ''  # a block's parameter with one row per token of the pretraining grid

    def _build_common(self, dim: int, depth: int, patch_size: int, pretrain_img_size: Union[int, Sequence[int]],
                      token_mixing: str) -> None:
        name = type(self).__name__
        if patch_size not in (8, 16, 32):
            raise ValueError(f'{name}: patch_size must be 8, 16 or 32 (the published models), got {patch_size!r}')
        if dim <= 0 or depth <= 0 or dim % 4:
            raise ValueError(f'{name}: embed_dims ({dim}) must be a positive multiple of 4 (pyramid widths D/4, D/2) '
                             f'and depth ({depth}) positive')
        pretrain_hw = tuple(int(v) for v in to_2tuple(pretrain_img_size))
        if min(pretrain_hw) < patch_size:
            raise ValueError(f'{name}: pretrain_img_size must be >= patch_size {patch_size}, got {pretrain_img_size!r}')
        if token_mixing not in TOKEN_MIXING_MODES:
            raise ValueError(f'{name}: token_mixing must be one of {TOKEN_MIXING_MODES}, got {token_mixing!r}')
        self.embed_dims, self.depth, self.patch_size = dim, depth, patch_size
        self.token_mixing = token_mixing
        # the token grid of the pretraining image = the window of the token operator
        self.pretrain_grid: Size2d = (pretrain_hw[0] // patch_size, pretrain_hw[1] // patch_size)
        self.num_layers = depth
        self.stem = nn.Module()
        self.stem.proj = PatchConv2d(self.in_channels, dim, patch_size)
        # patch 8: the pyramid starts from the native stride-8 map; patch 32 is repeated to stride 16 in forward
        self.pyramid = SimpleFeaturePyramid(dim, levels=self.out_indices,  # branches of returned levels only
                                            in_stride=8 if patch_size == 8 else 16)
        self.out_channels: Tuple[int, ...] = self.pyramid.out_channels
        self.register_load_state_dict_pre_hook(self._check_token_grid_on_load)

    # ------------------------------------------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size2d, Tuple[()]]:
        """(B, C, H, W) -> the token grid (B, ceil(H/p), ceil(W/p), D), channels last, and its size."""
        tokens = self.stem.proj(self.pad_to_patches(x)).permute(0, 2, 3, 1).contiguous()
        return tokens, (tokens.shape[1], tokens.shape[2]), ()

    def forward_feature(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[()]]:
        tokens, _, _ = self.embed(x)
        for block in self.blocks:
            tokens = self.checkpoint(block, tokens)
        if self.norm is not None:
            tokens = self.norm(tokens)
        feature = tokens.permute(0, 3, 1, 2)  # (B, D, gh, gw) at stride p
        if self.patch_size == 32:  # stride 32 -> 16 by repetition: level 3 (2x2 max-pool) is the native map
            feature = F.interpolate(feature, scale_factor=2.0, mode='nearest')
        return feature.contiguous(), ()

    # -------------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def _check_token_grid_on_load(module: 'AllMlpBackbone', state_dict: dict, prefix: str, *args) -> None:
        """Say what a checkpoint with other token-mixing shapes was made for and how to build the matching model:
        another patch size is another variant (its token count says nothing about the image size); the same patch
        with another token count is another pretraining grid (e.g. fine-tuned at 384)."""
        name = type(module).__name__
        stem = state_dict.get(f'{prefix}stem.proj.weight')
        if stem is not None and stem.dim() == 4 and tuple(stem.shape[-2:]) != (module.patch_size, ) * 2:
            patch = stem.shape[-1]
            archs = [arch for arch, s in module.arch_zoo.items()
                     if s['patch_size'] == patch and s['embed_dims'] == stem.shape[0]]
            choice = f'arch={archs[0]!r}' if archs else f'an arch with patch_size={patch}'
            raise CheckpointError(
                f'{name}: the checkpoint is for patch {patch} (stem kernel {patch}x{patch}) but the model has patch '
                f'{module.patch_size}: build the backbone with the checkpoint\'s variant ({choice}).')
        key = f'{prefix}blocks.0.{module.token_weight_name}'
        if key not in state_dict:
            return
        tokens = state_dict[key].shape[0]
        gh, gw = module.pretrain_grid
        if tokens == gh * gw:
            return
        side = math.isqrt(tokens)
        grid = f'{side}x{side} tokens, i.e. pretrain_img_size={side * module.patch_size}' if side * side == tokens \
            else f'{tokens} tokens'
        raise CheckpointError(
            f'{name}: the checkpoint\'s token-mixing weights are for {grid} (patch '
            f'{module.patch_size}), but the model was built for a {gh}x{gw} grid (pretrain_img_size='
            f'{(gh * module.patch_size, gw * module.patch_size)}). Build the backbone with the checkpoint\'s '
            f'pretrain_img_size: its token grid becomes the window of the any-size token mixing, so the weights keep '
            f'their meaning.')


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n

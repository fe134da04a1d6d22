"""MLP-Mixer (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", NeurIPS 2021) as a stride
4/8/16/32 pyramid backbone at any input size, with the published weights.

Architecture (official JAX/Flax ``google-research/vision_transformer`` ``vit_jax/models_mixer.py``; variants from
``vit_jax/configs/models.py`` and, for S, the paper's Table 1 as timm has it): a ``patch x patch`` convolution stem,
then blocks of ``x + TokenMlp(LN(x))`` (an MLP across the N tokens, per channel) and ``x + ChannelMlp(LN(x))``, and a
final LayerNorm (``pre_head_layer_norm``). LayerNorm eps 1e-6; the MLPs use Flax's ``nn.gelu``, which is the **tanh
approximation** (``gelu_approximate='tanh'``, the default here; timm's and mmpretrain's ports use the exact erf GELU,
``gelu_approximate='none'`` reproduces them).

Dense-prediction adaptation:

* **Any input size.** The token MLP's weights are tied to the N = gh0 x gw0 positions of the 224 pretraining grid
  (14 x 14 at patch 16, 7 x 7 at patch 32). By default (``token_mixing='window'``) it runs within windows of that
  grid, shifted by half a window in every second block, with padding that cannot change the result; at 224 this is
  the official computation. ``token_mixing='resample'`` is RaftMLP's published alternative (the grid is resized to
  gh0 x gw0 around every token-mixing step). Both are in :mod:`mmvit_backbones.models.layers.token_mixing`, whose
  docstring explains them; the README compares them. The image is zero-padded at the bottom/right to whole patches.
* **Pyramid**: ViTDet's simple feature pyramid (:class:`SimpleFeaturePyramid`) from the native token map: at patch 16
  the stride-16 map itself; at patch 8 the stride-8 map at its own stride (``in_stride=8``: x2 up for stride 4,
  identity for 8, max-pools for 16 and 32; widths D/2, D, D, D), so its resolution is not pooled away; at patch 32
  the map repeated 2x2 (nearest) to stride 16, so that level 3 (max-pool of that) is exactly the native map.
* ``frozen_stages``: 0 is the stem; the blocks form 4 stages of consecutive quarters; the final norm goes with stage 4.
  Layer depth for layer-wise lr decay: stem 0, block ``i`` ``i + 1``, final norm and pyramid ``depth + 1``.

Checkpoints: the official Flax ``.npz`` files (flattened parameter tree, ``stem/kernel`` HWIO, Dense kernels
``(in, out)``, LayerNorm ``scale``) load directly through ``init_cfg`` (``.npz`` paths are read by
:func:`mmvit_backbones.checkpoint.read_npz`), as do timm's converted ``jx_mixer_*.pth`` files (whose key layout is this
module's). A checkpoint made for another token grid (e.g. fine-tuned at 384: 24 x 24 tokens) is refused with the
fix: build the model with that ``pretrain_img_size``, and the windows are that grid.
"""
import math
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from ...checkpoint import CheckpointError, StateDict
from ...testing.parity import ParityAdapter, register_parity_adapter
from ...registry import register_model
from ..layers import TOKEN_MIXING_MODES, Mlp, PatchConv2d, SimpleFeaturePyramid, init_linear_and_layernorm, mix_tokens
from ..layers.traceable import ceil_div, is_exporting, pad_to_multiple
from .base import PyramidBackbone

Size2d = Tuple[int, int]
GELU_APPROXIMATIONS = ('tanh', 'none')


def _pair(size: Union[int, Sequence[int]]) -> Size2d:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class TokenMlp(nn.Module):
    """Mixer's token-mixing MLP: ``fc1`` (N -> hidden) and ``fc2`` (hidden -> N) across the tokens of one grid.

    Computed as left matrix products on the (B', N, C) token-first layout, so no transpose is materialised.
    """

    def __init__(self, num_tokens: int, hidden_dim: int, gelu_approximate: str = 'tanh'):
        super().__init__()
        self.fc1 = nn.Linear(num_tokens, hidden_dim)
        self.act = nn.GELU(approximate=gelu_approximate)
        self.fc2 = nn.Linear(hidden_dim, num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B', N, C) -> (B', N, C)
        hidden = self.act(torch.matmul(self.fc1.weight, x) + self.fc1.bias[:, None])  # (B', hidden, C)
        return torch.matmul(self.fc2.weight, hidden) + self.fc2.bias[:, None]


class MixerBlock(nn.Module):
    """``x + TokenMlp(LN(x))`` on the token grid (windowed or resampled), then ``x + ChannelMlp(LN(x))``."""

    def __init__(self, dim: int, window_hw: Size2d, tokens_dim: int, channels_dim: int, token_mixing: str,
                 shifted: bool, drop_path: float = 0.0, norm_eps: float = 1e-6, gelu_approximate: str = 'tanh'):
        super().__init__()
        self.window_hw, self.token_mixing, self.shifted = window_hw, token_mixing, shifted
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp_tokens = TokenMlp(window_hw[0] * window_hw[1], tokens_dim, gelu_approximate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp_channels = Mlp(dim, channels_dim)
        self.mlp_channels.act = nn.GELU(approximate=gelu_approximate)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, gh, gw, C)
        x = mix_tokens(x, self.token_mixing, self.window_hw, self.shifted, self.norm1, self.mlp_tokens,
                       self.drop_path)
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class AllMlpBackbone(PyramidBackbone):
    """What MLP-Mixer and ResMLP share: patch stem, token-mixing blocks on the (B, gh, gw, C) grid, final norm,
    simple feature pyramid from the token map, stages, layer depth, the token-grid check of checkpoints.

    Subclasses build ``self.blocks`` (each ``block(x)`` on a (B, gh, gw, C) grid) and ``self.norm`` in their
    ``__init__`` after calling :meth:`_build_common`, and name in ``token_weight_name`` the block parameter whose
    first dimension is the number of tokens (for the grid check of checkpoints).
    """

    new_param_prefixes = ('pyramid.', )
    token_weight_name = ''  # a block's parameter with one row per token of the pretraining grid

    def _build_common(self, dim: int, depth: int, patch_size: int, pretrain_img_size: Union[int, Sequence[int]],
                      token_mixing: str) -> None:
        name = type(self).__name__
        if patch_size not in (8, 16, 32):
            raise ValueError(f'{name}: patch_size must be 8, 16 or 32 (the published models), got {patch_size!r}')
        if dim <= 0 or depth <= 0 or dim % 4:
            raise ValueError(f'{name}: embed_dims ({dim}) must be a positive multiple of 4 (pyramid widths D/4, D/2) '
                             f'and depth ({depth}) positive')
        pretrain_hw = _pair(pretrain_img_size)
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
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> token grid (B, ceil(H/p), ceil(W/p), D); the image is zero-padded to whole patches."""
        p = self.patch_size
        pad_h, pad_w = pad_to_multiple(x.shape[-2], p), pad_to_multiple(x.shape[-1], p)
        if is_exporting() or pad_h or pad_w:  # (a traced size always pads, possibly by 0)
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.stem.proj(x).permute(0, 2, 3, 1).contiguous()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        if x.shape[0] == 0:
            return self.empty_outputs(x)
        h, w = x.shape[-2:]
        tokens = self.embed(x)
        for block in self.blocks:
            tokens = self.checkpoint(block, tokens)
        if self.norm is not None:
            tokens = self.norm(tokens)
        feature = tokens.permute(0, 3, 1, 2)  # (B, D, gh, gw) at stride p
        if self.patch_size == 32:  # stride 32 -> 16 by repetition: level 3 (2x2 max-pool) is the native map
            feature = F.interpolate(feature, scale_factor=2.0, mode='nearest')
        outs = self.pyramid(feature.contiguous(), levels=self.out_indices)
        # the grid was padded to whole patches: crop each level to ceil(size / stride)
        return tuple(out[..., :ceil_div(h, 2 ** (level + 2)), :ceil_div(w, 2 ** (level + 2))]
                     for level, out in zip(self.out_indices, outs))

    # ----------------------------------------------------------------------------------------------------- training
    def stage_blocks(self, stage: int) -> range:
        """Blocks of stage ``stage`` (1..4): consecutive quarters of the blocks."""
        n = len(self.blocks)
        return range(round(n * (stage - 1) / 4), round(n * stage / 4))

    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        modules: List[nn.Module] = [self.stem]
        for stage in range(1, frozen_stages + 1):
            modules += [self.blocks[i] for i in self.stage_blocks(stage)]
        if frozen_stages == self.num_stages and self.norm is not None:
            modules.append(self.norm)
        return modules

    def layer_depth(self, name: str) -> int:
        if name.startswith('stem.'):
            return 0
        match = re.match(r'blocks\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1
        return self.num_layers + 1

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


@register_model
class MLPMixer(AllMlpBackbone):
    """MLP-Mixer with ViTDet's simple feature pyramid (strides 4/8/16/32) at any input size.

    Args:
        arch: ``'s16'``, ``'s32'``, ``'b16'``, ``'b32'``, ``'l16'``, ``'l32'`` or a dict with ``embed_dims``,
            ``depth``, ``tokens_mlp_dims``, ``channels_mlp_dims``, ``patch_size`` (optional ``norm_eps`` 1e-6).
        pretrain_img_size: image size of the checkpoint (int or (h, w); 224 for every published Mixer); its token
            grid is the window of the token MLP.
        token_mixing: ``'window'`` (shifted windows of the pretraining grid, default) or ``'resample'`` (RaftMLP);
            see :mod:`mmvit_backbones.models.layers.token_mixing`.
        gelu_approximate: ``'tanh'`` (the official Flax GELU) or ``'none'`` (exact erf GELU of timm's port).
        final_norm: apply the final LayerNorm (``pre_head_layer_norm``) to the map that feeds the pyramid.
        drop_path_rate: stochastic depth, increasing linearly over the blocks (the official model has none).
        out_indices / frozen_stages / norm_eval / with_cp / init_cfg: as for every backbone.
    """

    arch_zoo = {
        **{f'{size}{patch}': dict(embed_dims=dim, depth=depth, tokens_mlp_dims=tokens, channels_mlp_dims=channels,
                                  patch_size=patch)
           for size, (dim, depth, tokens, channels) in dict(s=(512, 8, 256, 2048), b=(768, 12, 384, 3072),
                                                             l=(1024, 24, 512, 4096)).items()
           for patch in (16, 32)},
    }
    essential_keys = ('embed_dims', 'depth', 'tokens_mlp_dims', 'channels_mlp_dims', 'patch_size')
    weights_hint = ('official Flax files gs://mixer_models/imagenet1k/Mixer-B_16.npz and Mixer-L_16.npz (ImageNet-1k) '
                    'and gs://mixer_models/imagenet21k/Mixer-{B,L}_16.npz, over HTTP as '
                    'https://storage.googleapis.com/mixer_models/imagenet21k/Mixer-B_16.npz (google-research/'
                    'vision_transformer README), or timm\'s converted https://github.com/rwightman/'
                    'pytorch-image-models/releases/download/v0.1-vitjx/jx_mixer_b16_224-76587d61.pth')
    token_weight_name = 'mlp_tokens.fc2.weight'  # (N, tokens_mlp_dims)

    def __init__(self, arch: Union[str, dict] = 'b16', in_channels: int = 3,
                 pretrain_img_size: Union[int, Sequence[int]] = 224, token_mixing: str = 'window',
                 gelu_approximate: str = 'tanh', final_norm: bool = True, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        s = self.arch_settings
        dim, depth = int(s['embed_dims']), int(s['depth'])
        tokens_dim, channels_dim = int(s['tokens_mlp_dims']), int(s['channels_mlp_dims'])
        if tokens_dim <= 0 or channels_dim <= 0:
            raise ValueError(f'MLPMixer: tokens_mlp_dims and channels_mlp_dims must be positive, got {tokens_dim}, '
                             f'{channels_dim}')
        if gelu_approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f'MLPMixer: gelu_approximate must be one of {GELU_APPROXIMATIONS} (\'tanh\': the '
                             f'official Flax GELU), got {gelu_approximate!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'MLPMixer: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self._build_common(dim, depth, int(s['patch_size']), pretrain_img_size, token_mixing)
        norm_eps = float(s.get('norm_eps', 1e-6))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, as torch.linspace
        self.blocks = nn.ModuleList([
            MixerBlock(dim, self.pretrain_grid, tokens_dim, channels_dim, token_mixing, shifted=i % 2 == 1,
                       drop_path=rates[i], norm_eps=norm_eps, gelu_approximate=gelu_approximate)
            for i in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else None
        self.blocks.apply(init_linear_and_layernorm)
        self._freeze_stages()

    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official Flax tree (``/``-separated keys, optional ``params/`` root) or timm's layout -> ours (timm's
        names); the classifier head is dropped. Converted dicts pass through unchanged."""
        if not any('/' in key for key in state_dict):
            return {k: v for k, v in state_dict.items() if not k.startswith(('head.', 'pre_logits.'))}
        rules = ((r'^stem/', 'stem.proj.'),
                 (r'^MixerBlock_(\d+)/LayerNorm_0/', r'blocks.\1.norm1.'),
                 (r'^MixerBlock_(\d+)/LayerNorm_1/', r'blocks.\1.norm2.'),
                 (r'^MixerBlock_(\d+)/token_mixing/Dense_(\d)/', r'blocks.\1.mlp_tokens.fc\2.'),
                 (r'^MixerBlock_(\d+)/channel_mixing/Dense_(\d)/', r'blocks.\1.mlp_channels.fc\2.'),
                 (r'^pre_head_layer_norm/', 'norm.'))
        converted = {}
        for key, value in state_dict.items():
            key = key[len('params/'):] if key.startswith('params/') else key
            if key.startswith('head/'):
                continue
            for pattern, repl in rules:
                key, count = re.subn(pattern, repl, key)
                if count:
                    break
            else:
                converted[key] = value  # unknown: reported as unexpected by the loader
                continue
            # Dense_0 -> fc1, Dense_1 -> fc2
            key = re.sub(r'\.fc(\d)\.', lambda m: f'.fc{int(m.group(1)) + 1}.', key)
            if key.endswith('.kernel'):
                key = key[:-len('kernel')] + 'weight'
                value = value.permute(3, 2, 0, 1) if value.dim() == 4 else value.t()  # HWIO -> OIHW; (in, out)
            elif key.endswith('.scale'):
                key = key[:-len('scale')] + 'weight'
            converted[key] = value.contiguous()
        return converted


# ------------------------------------------------------------------------------------------------------------ parity
def flax_same_padding(size: int, patch: int) -> Tuple[int, int]:
    """Flax ``nn.Conv(padding='SAME')`` with kernel = stride = patch: (before, after) padding of one axis."""
    total = math.ceil(size / patch) * patch - size
    return total // 2, total - total // 2


def pretrain_grid_for(num_tokens: int, input_grid: Size2d, what: str) -> Size2d:
    """The token grid of an official model built for ``num_tokens``: the fixture input's grid when the counts match
    (models are initialised at their input size), else the square grid."""
    side = math.isqrt(num_tokens)
    if input_grid[0] * input_grid[1] == num_tokens:
        return tuple(input_grid)
    if side * side == num_tokens:
        return side, side
    raise ValueError(f'{what}: {num_tokens} tokens match neither the input grid {input_grid} nor a square grid')


def capture_outputs(model: AllMlpBackbone, x: torch.Tensor, block_ids: Sequence[int],
                    stem: bool) -> Dict[str, torch.Tensor]:
    """Run ``model`` and return its stem/block/norm maps as NCHW (the parity fixtures' layout)."""
    captured: Dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        return lambda _m, _i, out: captured.__setitem__(name, out if out.dim() == 4 and name == 'stem'
                                                        else out.permute(0, 3, 1, 2))

    hooks = [model.blocks[i].register_forward_hook(keep(f'block{i}')) for i in block_ids]
    hooks.append(model.norm.register_forward_hook(keep('norm')))
    if stem:
        hooks.append(model.stem.proj.register_forward_hook(keep('stem')))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def block_ids_of(fixture: dict) -> List[int]:
    return sorted(int(m.group(1)) for m in (re.fullmatch(r'block(\d+)', k) for k in fixture['outputs']) if m)


@register_parity_adapter('mlp_mixer')
def _parity_adapter(fixture: dict) -> ParityAdapter:
    """Any official Flax Mixer fixture: variant from the Flax key shapes, token grid from the token MLP (the input's
    grid when the counts match), input padded as Flax's ``SAME`` stem pads it. Outputs ``stem``, ``block{i}``,
    ``norm`` (NCHW); ``logits`` belong to the dropped head."""
    shapes = {key: tuple(shape) for key, shape, _ in fixture['keys']}
    patch, _, in_channels, dim = shapes['stem/kernel']
    depth = 1 + max(int(m.group(1)) for m in (re.match(r'MixerBlock_(\d+)/', k) for k in shapes) if m)
    num_tokens, tokens_dim = shapes['MixerBlock_0/token_mixing/Dense_0/kernel']
    channels_dim = shapes['MixerBlock_0/channel_mixing/Dense_0/kernel'][1]
    h, w = fixture['input_hw']
    grid = pretrain_grid_for(num_tokens, (math.ceil(h / patch), math.ceil(w / patch)), 'MLP-Mixer fixture')
    arch = dict(embed_dims=dim, depth=depth, tokens_mlp_dims=tokens_dim, channels_mlp_dims=channels_dim,
                patch_size=patch)

    def build() -> MLPMixer:
        return MLPMixer(arch=arch, in_channels=in_channels, pretrain_img_size=(grid[0] * patch, grid[1] * patch))

    def outputs(model: MLPMixer, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        (top, bottom), (left, right) = (flax_same_padding(s, patch) for s in x.shape[-2:])
        x = F.pad(x, (left, right, top, bottom))
        return capture_outputs(model, x, block_ids_of(fixture), stem=True)

    return ParityAdapter(build, outputs)

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
import re
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from timm.layers import DropPath

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import Mlp, Size2d, init_linear_and_layernorm, mix_tokens
from .base import HALF, OfficialWeights
from .single_scale import AllMlpBackbone

GELU_APPROXIMATIONS = ('tanh', 'none')


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


_GCS = 'https://storage.googleapis.com/mixer_models/'


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
        's16': dict(embed_dims=512, depth=8, tokens_mlp_dims=256, channels_mlp_dims=2048, patch_size=16),
        's32': dict(embed_dims=512, depth=8, tokens_mlp_dims=256, channels_mlp_dims=2048, patch_size=32),
        'b16': dict(embed_dims=768, depth=12, tokens_mlp_dims=384, channels_mlp_dims=3072, patch_size=16),
        'b32': dict(embed_dims=768, depth=12, tokens_mlp_dims=384, channels_mlp_dims=3072, patch_size=32),
        'l16': dict(embed_dims=1024, depth=24, tokens_mlp_dims=512, channels_mlp_dims=4096, patch_size=16),
        'l32': dict(embed_dims=1024, depth=24, tokens_mlp_dims=512, channels_mlp_dims=4096, patch_size=32),
    }
    essential_keys = ('embed_dims', 'depth', 'tokens_mlp_dims', 'channels_mlp_dims', 'patch_size')
    arch_defaults = dict(norm_eps=1e-6)
    official_weights = {
        'b16': OfficialWeights('b16', _GCS + 'imagenet1k/Mixer-B_16.npz', 'Apache-2.0', 76.62, mean=HALF, std=HALF,
                               note="top-1 of timm's re-evaluation"),
        'l16': OfficialWeights('l16', _GCS + 'imagenet1k/Mixer-L_16.npz', 'Apache-2.0', 72.08, mean=HALF, std=HALF,
                               note="top-1 of timm's re-evaluation"),
        'b16_21k': OfficialWeights('b16', _GCS + 'imagenet21k/Mixer-B_16.npz', 'Apache-2.0', mean=HALF, std=HALF,
                                   note='ImageNet-21k classifier'),
        'l16_21k': OfficialWeights('l16', _GCS + 'imagenet21k/Mixer-L_16.npz', 'Apache-2.0', mean=HALF, std=HALF,
                                   note='ImageNet-21k classifier'),
    }
    weights_note = ('Flax .npz files as published (google-research/vision_transformer README), or timm\'s '
                    'converted https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/'
                    'jx_mixer_b16_224-76587d61.pth.')
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
        self.check_drop_path_rate(drop_path_rate)
        self._build_common(dim, depth, int(s['patch_size']), pretrain_img_size, token_mixing)
        norm_eps = float(s['norm_eps'])
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

"""ResMLP (Touvron et al., "ResMLP: Feedforward networks for image classification with data-efficient training",
TPAMI 2022) as a stride 4/8/16/32 pyramid backbone at any input size, with the published weights.

Architecture (official ``facebookresearch/deit`` ``resmlp_models.py``): a ``patch x patch`` convolution stem, then
blocks of ``x + gamma_1 * TokenLinear(Aff(x))`` (one N x N linear layer across the tokens, per channel) and
``x + gamma_2 * Mlp(Aff(x))`` (ratio 4, exact GELU), where ``Aff`` is a per-channel affine map ``alpha * x + beta``
(no statistics) and ``gamma_*`` are per-channel layer scales; a final ``Aff``. Stochastic depth is the same in every
block (the official ``dpr = [drop_path_rate] * depth``, "as in CaiT", deit#106).

Dense-prediction adaptation, shared with :mod:`.mlp_mixer`:

* **Any input size.** The N x N token layer is tied to the 14 x 14 grid of a 224 image (28 x 28 for B24/8), and a
  dense operator for every token of a detection image is out of the question (17.6M weights per block at 800x1333).
  By default (``token_mixing='window'``) it runs within windows of the pretraining grid, shifted by half a window in
  every second block, with padding that cannot change the result; at 224 this is the official computation.
  ``token_mixing='resample'`` is RaftMLP's published alternative. Both: :mod:`mmvit_backbones.models.layers.
  token_mixing`.
* **Pyramid**: ViTDet's simple feature pyramid from the native token map: the stride-16 map of the S models, and
  B24/8's stride-8 map at its own stride (x2 up, identity, max-pools; widths 384/768/768/768), not pooled to 16.
* ``frozen_stages``, layer depth and padding of the image as in :class:`~.mlp_mixer.MLPMixer`.

Checkpoints: the official deit files (``resmlp_{12,24,36}_{dist,no_dist}.pth``, ``resmlp_{12,24}_dino.pth``,
``resmlpB_24_{dist,no_dist,22k}.pth``: flat state dicts, or wrapped) and timm's renamed layout (``stem.``,
``linear_tokens``, ``mlp_channels``, ``ls1``/``ls2``, ``alpha``/``beta`` of shape (1, 1, D)) load directly through
``init_cfg``. Our key layout is timm's with (D,)-shaped ``alpha``/``beta``.
"""
import re
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from timm.layers import DropPath

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import Mlp, init_linear_and_layernorm, mix_tokens
from .base import OfficialWeights
from .single_scale import AllMlpBackbone, Size2d


class Affine(nn.Module):
    """ResMLP's "norm": ``alpha * x + beta`` per channel (last dimension)."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim)
        return torch.addcmul(self.beta, self.alpha, x)


class TokenLinear(nn.Linear):
    """ResMLP's token-mixing layer ``nn.Linear(N, N)`` applied across the tokens of a (B', N, C) grid (a left
    matrix product: no transpose is materialised)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B', N, C) -> (B', N, C)
        return torch.matmul(self.weight, x) + self.bias[:, None]


class ResMLPBlock(nn.Module):
    """``x + ls1 * TokenLinear(Aff(x))`` on the token grid (windowed or resampled), then ``x + ls2 * Mlp(Aff(x))``."""

    def __init__(self, dim: int, window_hw: Size2d, token_mixing: str, shifted: bool, drop_path: float = 0.0,
                 init_scale: float = 1e-4, mlp_ratio: float = 4.0):
        super().__init__()
        self.window_hw, self.token_mixing, self.shifted = window_hw, token_mixing, shifted
        num_tokens = window_hw[0] * window_hw[1]
        self.norm1 = Affine(dim)
        self.linear_tokens = TokenLinear(num_tokens, num_tokens)
        self.norm2 = Affine(dim)
        self.mlp_channels = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ls1 = nn.Parameter(torch.full((dim, ), float(init_scale)))
        self.ls2 = nn.Parameter(torch.full((dim, ), float(init_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, gh, gw, C)
        x = mix_tokens(x, self.token_mixing, self.window_hw, self.shifted, self.norm1, self.linear_tokens,
                       lambda branch: self.drop_path(self.ls1 * branch))
        return x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))


_DEIT = 'https://dl.fbaipublicfiles.com/deit/'


@register_model
class ResMLP(AllMlpBackbone):
    """ResMLP with ViTDet's simple feature pyramid (strides 4/8/16/32) at any input size.

    Args:
        arch: ``'12'``, ``'24'``, ``'36'`` (S models, patch 16), ``'b24'`` (patch 8) or a dict with ``embed_dims``,
            ``depth``, ``patch_size`` (optional ``init_scale`` of the layer scales, ``mlp_ratio`` 4).
        pretrain_img_size: image size of the checkpoint (int or (h, w); 224 for every published ResMLP); its token
            grid is the window of the token layer.
        token_mixing: ``'window'`` (shifted windows of the pretraining grid, default) or ``'resample'`` (RaftMLP).
        final_norm: apply the final affine ``norm`` to the map that feeds the pyramid.
        drop_path_rate: stochastic depth, the same in every block (the official rule).
        out_indices / frozen_stages / norm_eval / with_cp / init_cfg: as for every backbone.
    """

    arch_zoo = {
        '12': dict(embed_dims=384, depth=12, patch_size=16, init_scale=0.1),
        '24': dict(embed_dims=384, depth=24, patch_size=16, init_scale=1e-5),
        '36': dict(embed_dims=384, depth=36, patch_size=16, init_scale=1e-6),
        'b24': dict(embed_dims=768, depth=24, patch_size=8, init_scale=1e-6),
    }
    arch_aliases = {'b_24': 'b24'}
    essential_keys = ('embed_dims', 'depth', 'patch_size')
    arch_defaults = dict(init_scale=1e-4, mlp_ratio=4.0)
    official_weights = {
        '12': OfficialWeights('12', _DEIT + 'resmlp_12_no_dist.pth', 'Apache-2.0', 76.6),
        '12_dist': OfficialWeights('12', _DEIT + 'resmlp_12_dist.pth', 'Apache-2.0', 77.8, note='distilled'),
        '12_dino': OfficialWeights('12', _DEIT + 'resmlp_12_dino.pth', 'Apache-2.0', note='self-supervised (DINO)'),
        '24': OfficialWeights('24', _DEIT + 'resmlp_24_no_dist.pth', 'Apache-2.0', 79.4),
        '24_dist': OfficialWeights('24', _DEIT + 'resmlp_24_dist.pth', 'Apache-2.0', 80.8, note='distilled'),
        '24_dino': OfficialWeights('24', _DEIT + 'resmlp_24_dino.pth', 'Apache-2.0', note='self-supervised (DINO)'),
        '36': OfficialWeights('36', _DEIT + 'resmlp_36_no_dist.pth', 'Apache-2.0', 79.8),
        '36_dist': OfficialWeights('36', _DEIT + 'resmlp_36_dist.pth', 'Apache-2.0', 81.1, note='distilled'),
        'b24': OfficialWeights('b24', _DEIT + 'resmlpB_24_no_dist.pth', 'Apache-2.0', 81.0),
        'b24_dist': OfficialWeights('b24', _DEIT + 'resmlpB_24_dist.pth', 'Apache-2.0', 83.6, note='distilled'),
        'b24_22k': OfficialWeights('b24', _DEIT + 'resmlpB_24_22k.pth', 'Apache-2.0', 84.4,
                                   note='ImageNet-22k pretrained, fine-tuned on ImageNet-1k'),
    }
    weights_note = "facebookresearch/deit README_resmlp.md; timm's resmlp_*_224 files load too."
    token_weight_name = 'linear_tokens.weight'  # (N, N)

    def __init__(self, arch: Union[str, dict] = '24', in_channels: int = 3,
                 pretrain_img_size: Union[int, Sequence[int]] = 224, token_mixing: str = 'window',
                 final_norm: bool = True, drop_path_rate: float = 0.0, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        s = self.arch_settings
        self.check_drop_path_rate(drop_path_rate)
        dim, depth = int(s['embed_dims']), int(s['depth'])
        self._build_common(dim, depth, int(s['patch_size']), pretrain_img_size, token_mixing)
        self.blocks = nn.ModuleList([
            ResMLPBlock(dim, self.pretrain_grid, token_mixing, shifted=i % 2 == 1, drop_path=drop_path_rate,
                        init_scale=float(s['init_scale']), mlp_ratio=float(s['mlp_ratio']))
            for i in range(depth)])
        self.norm = Affine(dim) if final_norm else None
        self.blocks.apply(init_linear_and_layernorm)  # official: trunc-normal .02 Linear weights, zero biases
        self._freeze_stages()

    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official deit keys (``patch_embed``, ``attn``, ``mlp``, ``gamma_1/2``) or timm's (``stem``,
        ``linear_tokens``, ``mlp_channels``, ``ls1/2``, (1, 1, D) ``alpha``/``beta``) -> ours; the classifier head is
        dropped. Converted dicts pass through unchanged."""
        rules = ((r'^patch_embed\.', 'stem.'), (r'\.attn\.', '.linear_tokens.'), (r'\.mlp\.', '.mlp_channels.'),
                 (r'\.gamma_1$', '.ls1'), (r'\.gamma_2$', '.ls2'))
        converted = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'head_dist.')):
                continue
            for pattern, repl in rules:
                key = re.sub(pattern, repl, key)
            if key.endswith(('.alpha', '.beta')):
                value = value.reshape(-1)
            converted[key] = value
        return converted

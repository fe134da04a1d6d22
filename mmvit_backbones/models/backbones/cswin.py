"""CSWin Transformer (Dong et al., "CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped
Windows", CVPR 2022, arXiv 2107.00652).

Re-implementation of microsoft/CSWin-Transformer's classification model (``models/cswin.py``) as a dense-prediction
backbone, with the any-size behaviour of its official segmentation backbone (``segmentation/backbone/
cswin_transformer.py``, mmseg 0.x only) as the reference. Everything runs channel-last, all LayerNorms eps 1e-5.

* **stem**: conv 7x7/4 pad 2 + LN. The official conv gives ``floor((H - 3) / 4) + 1`` rows; the image is zero-padded
  at the bottom/right to a multiple of 4 first so that it gives ``ceil(H / 4)`` (identical when ``H % 4 == 0``).
* **stages** ``i = 0..3`` (strides 4/8/16/32, channels ``C * 2**i``); stages 1-3 start with a *merge* (conv 3x3/2
  pad 1 + LN, ``ceil`` sizes). Pre-norm blocks: ``x + proj(CSWinAttention(norm1(x)))``, ``x + mlp(norm2(x))``.
* **cross-shaped window attention**: ``qkv`` (one Linear, bias) is split by channels in two halves, each with half
  the heads. Branch 0 attends within *vertical* stripes (full height, ``split_size`` columns), branch 1 within
  *horizontal* stripes (``split_size`` rows, full width); the halves are concatenated and projected. The last stage
  has one branch attending over the whole map (global). qk scale ``head_dim ** -0.5``.
* **LePE** (locally-enhanced positional encoding): a depthwise 3x3 conv (``get_v``) over V, added to the attention
  output. As in the official code it runs on each stripe window separately, so it zero-pads at stripe borders.

**Any input size, as the official segmentation backbone computes it** (the classifier crashes off its pretraining
size: fixed ``Rearrange``, square-only reshapes, grids that must be multiples of the stripe width). Stripe widths
are Python ints applied to the actual grid of each stage; when an extent is not a multiple of the stripe width:

* the *already projected* q, k and v (bias included) of a branch are zero-padded along its stripe axis only
  (vertical stripes: W; horizontal stripes: H) to a multiple of the width, ``pad // 2`` before and the rest after;
* **no attention mask**: padded keys take part in the softmax with logit ``q . 0 = 0`` and value 0, so they dilute
  the weights of real keys (``mask_padded_keys=True`` gives them ``-inf`` instead; off by default, because the
  official UPerNet results were obtained with the unmasked computation and the weights expect it);
* LePE convolves each *padded* stripe (the padded zeros are its neighbours at the image border);
* the outputs are cropped back; the global last stage is never padded.

Layout and copies: a stripe window batch is ``(B * windows, heads, L, d)`` for the shared SDPA core. Horizontal
stripes of an unpadded map are plain views of the ``qkv`` output (rows are contiguous); vertical stripes are
horizontal stripes of the transposed map (the LePE kernel transposed with it), which costs one copy that also does
the padding; the global branch is the single "stripe" of the whole map. The (cropped) results of a branch stay views
of the attention output until one concatenation assembles the two channel halves for ``proj``. While exporting to
ONNX (traced sizes) every stripe branch takes the padded path, by a possibly zero amount.

Output levels pass through new per-level LayerNorms ``norm{i}`` (the official segmentation backbone's ``norm1..4``;
an official UPerNet checkpoint fills them, ImageNet checkpoints do not have them). Checkpoints load through
:meth:`CSWin.convert_checkpoint` (classification keys, segmentation keys, mmseg ``backbone.`` checkpoints); which
weights of a training checkpoint are used is explicit (``checkpoint_weights``).
"""
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from timm.layers import DropPath

from ...checkpoint import StateDict, read_checkpoint
from ...registry import register_model
from ..layers import Mlp, attention, init_linear_and_layernorm
from ..layers.traceable import is_exporting, pad_to_multiple
from .base import OfficialWeights, PyramidBackbone

CHECKPOINT_WEIGHTS = ('ema', 'raw')


# --------------------------------------------------------------------------------------------------------- layers
class CSWinAttention(nn.Module):
    """Cross-shaped window self-attention with LePE (``qkv``/``proj`` of the official block, ``get_v`` as ``lepe``).

    Args:
        dim: channels. num_heads: heads over both branches (each stripe branch gets half).
        split_size: stripe width in tokens. global_attn: one branch over the whole map (last stage).
        mask_padded_keys: keys in the stripe padding get ``-inf`` logits instead of taking part with logit 0.
    """

    def __init__(self, dim: int, num_heads: int, split_size: int, global_attn: bool, mask_padded_keys: bool = False):
        super().__init__()
        self.num_branches = 1 if global_attn else 2
        self.heads = num_heads // self.num_branches  # per branch
        self.branch_dim = dim // self.num_branches
        self.head_dim = dim // num_heads
        self.split_size = split_size
        self.mask_padded_keys = mask_padded_keys
        self.qkv = nn.Linear(dim, dim * 3)
        self.lepe = nn.ModuleList([
            nn.Conv2d(self.branch_dim, self.branch_dim, 3, padding=1, groups=self.branch_dim)
            for _ in range(self.num_branches)])
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, H, W, C)
        b, h, w, _ = x.shape
        # channels of qkv: (q|k|v) x (branch) x (heads) x (head_dim), as the official reshape splits them
        # (unbind rather than indexing, here and for q/k/v: the backward of each select zero-fills a tensor of the
        # whole input's size and autograd sums them; unbind's stacks the parts' gradients once)
        branches = self.qkv(x).view(b, h, w, 3, self.num_branches, self.heads, self.head_dim).unbind(4)
        if self.num_branches == 1:  # global: one "stripe" covering the whole map, never padded
            return self.proj(self._stripes(branches[0], None, self.lepe[0].weight, self.lepe[0].bias))
        # branch 0: vertical stripes (full height x split_size columns) = horizontal stripes of the transposed map,
        # with the LePE kernel transposed accordingly; branch 1: horizontal stripes (split_size rows x full width)
        vertical = self._stripes(branches[0].transpose(1, 2), self.split_size,
                                 self.lepe[0].weight.transpose(-1, -2), self.lepe[0].bias).transpose(1, 2)
        horizontal = self._stripes(branches[1], self.split_size, self.lepe[1].weight, self.lepe[1].bias)
        return self.proj(torch.cat([vertical, horizontal], dim=-1))  # the one copy that assembles the halves

    def _stripes(self, qkv: torch.Tensor, width: Optional[int], lepe_weight: torch.Tensor,
                 lepe_bias: torch.Tensor) -> torch.Tensor:
        """Attention within horizontal stripes of ``width`` full rows (None: the whole map, unpadded).

        qkv: (B, H, W, 3, heads, d) (a view of the projection) -> (B, H, W, heads * d), often a view.
        """
        b, h, w = qkv.shape[:3]
        heads, d = self.heads, self.head_dim
        padded = width is not None and (is_exporting() or h % width != 0)  # traced sizes: always (maybe by 0)
        width = h if width is None else width
        pad = pad_to_multiple(h, width)
        top = pad // 2  # the official split: pad // 2 before, the rest after
        if padded:
            qkv = F.pad(qkv, (0, 0, 0, 0, 0, 0, 0, 0, top, pad - top))  # zeros after the projection, as official
        n = (h + pad) // width  # stripes per image
        length = width * w  # tokens per stripe
        # (B * n, L, 3, heads, d): a view for contiguous rows, one copy for a transposed map (F.pad's output is
        # already laid out in the transposed order)
        q, k, v_tokens = qkv.reshape(b * n, length, 3, heads, d).unbind(2)  # each (B * n, L, heads, d)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v_tokens))  # each (B * n, heads, L, d)
        # LePE: depthwise 3x3 over each stripe separately (zero padding at stripe borders)
        v_map = v_tokens.reshape(b * n, width, w, heads * d).permute(0, 3, 1, 2)
        lepe = F.conv2d(v_map, lepe_weight, lepe_bias, padding=1, groups=heads * d)  # (B * n, heads * d, width, W)
        lepe = lepe.permute(0, 2, 3, 1).reshape(b * n, length, heads, d).transpose(1, 2)
        bias = self._padding_bias(b, n, width, w, top, h, q) if padded and self.mask_padded_keys else None
        y = attention(q, k, v, bias) + lepe  # (B * n, heads, L, d)
        y = y.transpose(1, 2).reshape(b, n * width, w, heads * d)
        return y[:, top:top + h] if padded else y

    @staticmethod
    def _padding_bias(b: int, n: int, width: int, w: int, top: int, h: int, ref: torch.Tensor) -> torch.Tensor:
        """(B * n, 1, 1, L) additive bias: ``-inf`` for keys in the padded rows, 0 elsewhere."""
        rows = torch.arange(n * width, device=ref.device)
        real = ((rows >= top) & (rows < top + h)).view(1, n, 1, 1, width, 1).expand(b, n, 1, 1, width, w)
        zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
        return torch.where(real, zero, zero - float('inf')).reshape(b * n, 1, 1, width * w)


class CSWinBlock(nn.Module):
    """Pre-norm block: ``x + drop_path(attn(norm1(x)))``, ``x + drop_path(mlp(norm2(x)))`` on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, split_size: int, mlp_ratio: float, global_attn: bool,
                 drop_path: float, mask_padded_keys: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CSWinAttention(dim, num_heads, split_size, global_attn, mask_padded_keys)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvNorm(nn.Module):
    """Conv + LayerNorm on channels: the stem (7x7/4 pad 2) and the merges (3x3/2 pad 1). Channel-last output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, H', W', C_out)
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class CSWinStage(nn.Module):
    """The merge into this stage (none for the first) and its blocks."""

    def __init__(self, downsample: Optional[ConvNorm], blocks: List[CSWinBlock]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)


# ------------------------------------------------------------------------------------------------------ backbone
_RELEASE = 'https://github.com/microsoft/CSWin-Transformer/releases/download/'


@register_model
class CSWin(PyramidBackbone):
    """CSWin Transformer backbone: 4 NCHW levels at strides 4/8/16/32 (``C, 2C, 4C, 8C`` channels), any input size.

    Args:
        arch: ``'t'``, ``'s'``, ``'b'``, ``'l'`` (224 pretraining, stripes 1/2/7/7), ``'b-384'``, ``'l-384'``
            (stripes 1/2/12/12), long names (``'tiny'`` ...) too; or a dict with ``embed_dims``, ``depths``,
            ``num_heads`` and optionally ``split_size`` (1, 2, 7, 7), ``mlp_ratio`` (4) and ``dims`` (channels of
            the 4 stages; default ``embed_dims * 2**i``).
        split_size: stripe width of each stage at run time (4 ints; the last stage is global, its value unused).
            None: the variant's. No weight depends on it (e.g. 12 with 384-pretrained weights).
        mask_padded_keys: give keys in the stripe padding ``-inf`` logits instead of letting them take part in the
            softmax with logit 0 as the official segmentation backbone does (default False: the official result).
        checkpoint_weights: which weights of a training checkpoint that holds both ``state_dict_ema`` and
            ``state_dict`` to load: ``'ema'`` (default: the EMA weights, the published/evaluated ones) or ``'raw'``
            (``state_dict`` first, as the official segmentation code's loader does). Flat files load as they are.
        drop_path_rate: stochastic depth, linear over all blocks (official UPerNet: 0.3 / 0.4 / 0.6 for T / S / B).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see :class:`PyramidBackbone`.
    """

    arch_zoo = {
        't': dict(embed_dims=64, depths=(1, 2, 21, 1), num_heads=(2, 4, 8, 16)),
        's': dict(embed_dims=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16)),
        'b': dict(embed_dims=96, depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32)),
        'l': dict(embed_dims=144, depths=(2, 4, 32, 2), num_heads=(6, 12, 24, 24)),
        'b-384': dict(embed_dims=96, depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32), split_size=(1, 2, 12, 12)),
        'l-384': dict(embed_dims=144, depths=(2, 4, 32, 2), num_heads=(6, 12, 24, 24), split_size=(1, 2, 12, 12)),
    }
    arch_aliases = {'tiny': 't', 'small': 's', 'base': 'b', 'large': 'l', 'base-384': 'b-384', 'large-384': 'l-384'}
    essential_keys = ('embed_dims', 'depths', 'num_heads')
    arch_defaults = dict(split_size=(1, 2, 7, 7), mlp_ratio=4.0, dims=None)
    official_weights = {
        't': OfficialWeights('t', _RELEASE + 'v0.1.0/cswin_tiny_224.pth', 'MIT', 82.8),
        's': OfficialWeights('s', _RELEASE + 'v0.1.0/cswin_small_224.pth', 'MIT', 83.6),
        'b': OfficialWeights('b', _RELEASE + 'v0.1.0/cswin_base_224.pth', 'MIT', 84.2),
        'b_384': OfficialWeights('b-384', _RELEASE + 'v0.1.0/cswin_base_384.pth', 'MIT', 85.5, input_size=384),
        'l': OfficialWeights('l', _RELEASE + 'v0.1.0/cswin_large_224.pth', 'MIT', 86.5,
                             note='ImageNet-22k pretrained, fine-tuned on ImageNet-1k'),
        'l_384': OfficialWeights('l-384', _RELEASE + 'v0.1.0/cswin_large_384.pth', 'MIT', 87.5, input_size=384,
                                 note='ImageNet-22k pretrained, fine-tuned on ImageNet-1k'),
        'l_22k': OfficialWeights('l', _RELEASE + 'v0.1.0/cswin_large_22k_224.pth', 'MIT',
                                 note='ImageNet-22k classifier (21841 classes)'),
    }
    weights_note = ('Official UPerNet (ADE20K) checkpoints load too: ' + _RELEASE +
                    'v0.2.0/upernet_cswin_<tiny|small|base>.pth.')
    new_param_prefixes = ('norm0.', 'norm1.', 'norm2.', 'norm3.')

    def __init__(self, arch: Union[str, dict] = 't', in_channels: int = 3,
                 split_size: Optional[Sequence[int]] = None, mask_padded_keys: bool = False,
                 checkpoint_weights: str = 'ema', drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        dims, depths, heads, splits, mlp_ratio = self._check_settings(self.arch_settings)
        if split_size is not None:
            splits = self._check_split_size(split_size, 'split_size')
        if checkpoint_weights not in CHECKPOINT_WEIGHTS:
            raise ValueError(f'CSWin: checkpoint_weights must be one of {CHECKPOINT_WEIGHTS} (which weights of a '
                             f'training checkpoint to load), got {checkpoint_weights!r}')
        self.check_drop_path_rate(drop_path_rate)
        self.depths, self.split_size = depths, splits
        self.mask_padded_keys = bool(mask_padded_keys)
        self.checkpoint_weights = checkpoint_weights
        self.num_layers = sum(depths)
        self.out_channels = dims

        self.stem = ConvNorm(in_channels, dims[0], 7, 4, 2)
        dpr = torch.linspace(0, drop_path_rate, self.num_layers, device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i in range(4):
            first = sum(depths[:i])
            blocks = [CSWinBlock(dims[i], heads[i], splits[i], mlp_ratio, global_attn=i == 3,
                                 drop_path=dpr[first + j], mask_padded_keys=self.mask_padded_keys)
                      for j in range(depths[i])]
            self.stages.append(CSWinStage(ConvNorm(dims[i - 1], dims[i], 3, 2, 1) if i else None, blocks))
        for i in self.out_indices:  # new per-output norms (the official segmentation backbone's norm1..norm4)
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i]))
        self.apply(init_linear_and_layernorm)  # official init; convs keep PyTorch's default as in the official code

    # ----------------------------------------------------------------------------------------------- arguments
    @staticmethod
    def _check_split_size(value, name: str) -> Tuple[int, ...]:
        splits = tuple(value) if isinstance(value, (list, tuple)) else ()
        if len(splits) != 4 or not all(isinstance(s, int) and s >= 1 for s in splits):
            raise ValueError(f'CSWin: {name} must be 4 positive ints (stripe width per stage, e.g. (1, 2, 7, 7); '
                             f'the last stage is global), got {value!r}')
        return splits

    @classmethod
    def _check_settings(cls, s: dict):
        dim, depths, heads = s['embed_dims'], tuple(s['depths']), tuple(s['num_heads'])
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f'CSWin: embed_dims must be a positive int, got {dim!r}')
        dims = tuple(s.get('dims') or (dim * 2 ** i for i in range(4)))
        if len(depths) != 4 or len(heads) != 4 or len(dims) != 4 or \
                not all(isinstance(d, int) and d >= 1 for d in depths + dims):
            raise ValueError(f'CSWin: depths, num_heads (and dims) need 4 positive ints (one per stage), got '
                             f'{depths!r}, {heads!r}, {dims!r}')
        for i, (c, h) in enumerate(zip(dims, heads)):
            branches = 1 if i == 3 else 2  # stages 0-2 split channels and heads into two stripe branches
            if not isinstance(h, int) or h < branches or h % branches or c % h:
                raise ValueError(f'CSWin: stage {i} has {c} channels and num_heads {h!r}; the heads must divide the '
                                 f'channels' + (' and be even (half per stripe branch)' if branches == 2 else ''))
        mlp_ratio = s['mlp_ratio']
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f'CSWin: mlp_ratio must be > 0, got {mlp_ratio!r}')
        splits = cls._check_split_size(s['split_size'], "arch['split_size']")
        return dims, depths, heads, splits, mlp_ratio

    # ------------------------------------------------------------------------------------------------- forward
    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        maps = self.forward_stages(x)
        return [getattr(self, f'norm{i}')(maps[i]).permute(0, 3, 1, 2).contiguous() for i in self.out_indices]

    def forward_stages(self, x: torch.Tensor, pad_to_stride: bool = True) -> Dict[int, torch.Tensor]:
        """Each needed stage after its last block, without the output norms: ``{i: (B, h_i, w_i, C_i)}``.

        ``pad_to_stride=False`` skips the stem's padding to a multiple of 4 (the official geometry, floor((H-3)/4)+1
        rows; used for parity at such sizes).
        """
        pad_h, pad_w = pad_to_multiple(x.shape[-2], 4), pad_to_multiple(x.shape[-1], 4)
        if pad_to_stride and (is_exporting() or pad_h or pad_w):  # traced sizes: always pad (maybe by 0)
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.stem(x)  # (B, ceil(H/4), ceil(W/4), C)
        last = max(self.out_indices)
        maps = {}
        for i, stage in enumerate(self.stages[:last + 1]):
            if stage.downsample is not None:
                x = stage.downsample(x.permute(0, 3, 1, 2))
            for block in stage.blocks:
                x = self.checkpoint(block, x)
            maps[i] = x
        return maps

    # ------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        # stage i includes the merge into it; the per-output norms are new and stay trainable
        return [self.stem] + list(self.stages[:frozen_stages])

    def layer_depth(self, name: str) -> int:
        if name.startswith('stem.'):
            return 0
        if name.startswith('stages.'):
            parts = name.split('.')
            i = int(parts[1])
            if parts[2] == 'blocks':
                return sum(self.depths[:i]) + int(parts[3]) + 1
            return sum(self.depths[:i])  # the merge: after the previous stage's last block
        return self.num_layers + 1

    # --------------------------------------------------------------------------------------------- checkpoints
    _BLOCK_KEY = re.compile(r'^stage([1-4])\.(\d+)\.(.+)$')

    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """Official keys -> ours; idempotent (a converted dict has none of the official names).

        Classification (``models/cswin.py``) and segmentation (``segmentation/backbone/cswin_transformer.py``)
        layouts: ``stage1_conv_embed.{0,2}`` -> ``stem.{conv,norm}``; ``stage{s}.{j}.`` ->
        ``stages.{s-1}.blocks.{j}.`` with ``qkv``/``proj`` under ``attn.`` and ``attns.{b}.get_v`` ->
        ``attn.lepe.{b}``; ``merge{m}`` -> ``stages.{m}.downsample``; the segmentation backbone's output norms
        ``norm{k}`` (k = 1..4) -> ``norm{k-1}``. The classifier's final ``norm`` and ``head`` are dropped (the
        official segmentation code ignores them too).
        """
        if not any(k.startswith(('stage1_conv_embed.', 'merge1.')) or CSWin._BLOCK_KEY.match(k) for k in state_dict):
            return dict(state_dict)  # already ours
        out = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'norm.')):
                continue
            new = key
            match = CSWin._BLOCK_KEY.match(key)
            if match:
                stage, block, rest = int(match.group(1)) - 1, match.group(2), match.group(3)
                rest = re.sub(r'^attns\.(\d+)\.get_v\.', r'attn.lepe.\1.', rest)
                rest = re.sub(r'^(qkv|proj)\.', r'attn.\1.', rest)
                new = f'stages.{stage}.blocks.{block}.{rest}'
            elif key.startswith('stage1_conv_embed.0.'):
                new = 'stem.conv.' + key[len('stage1_conv_embed.0.'):]
            elif key.startswith('stage1_conv_embed.2.'):
                new = 'stem.norm.' + key[len('stage1_conv_embed.2.'):]
            elif re.match(r'^merge[1-3]\.', key):
                new = f'stages.{key[5]}.downsample.{key[7:]}'
            elif re.match(r'^norm[1-4]\.', key):
                new = f'norm{int(key[4]) - 1}.{key[6:]}'
            out[new] = value
        return out

    def init_weights(self) -> None:
        """As :class:`PyramidBackbone`, with ``checkpoint_weights='raw'`` picking ``state_dict`` over
        ``state_dict_ema`` in training checkpoints that have both (the shared loader prefers the EMA weights)."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        if self.checkpoint_weights == 'ema' or not any(c.get('type') == 'Pretrained' for c in cfgs):
            return super().init_weights()
        selected = []
        for cfg in cfgs:
            if cfg.get('type') == 'Pretrained':
                checkpoint = cfg['checkpoint']
                if isinstance(checkpoint, (str, os.PathLike)):
                    checkpoint = read_checkpoint(checkpoint, self.weights_hint)
                if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
                    print_log("CSWin: checkpoint_weights='raw': loading 'state_dict' (not 'state_dict_ema')",
                              logger='current')
                    checkpoint = checkpoint['state_dict']
                cfg = dict(cfg, checkpoint=checkpoint)
            selected.append(cfg)
        original, self.init_cfg = self.init_cfg, selected
        try:
            super().init_weights()
        finally:
            self.init_cfg = original

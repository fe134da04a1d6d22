"""BoTNet: Bottleneck Transformers for Visual Recognition (Srinivas et al., CVPR 2021, arXiv 2101.11605).

A ResNet in which the 3x3 convolution of some bottleneck blocks is replaced by global multi-head self-attention
(MHSA) with 2-D relative position logits ("BoT blocks"). Layouts:

* ``'26t'``: timm's ``botnet26t_256`` (the PyTorch reference with ImageNet weights): tiered 3-conv stem
  (24/32/64 channels) + max-pool, stages of 2 blocks, a BoT block as the second block of stage 3 and both blocks of
  stage 4, ReLU, BatchNorm everywhere;
* ``'50'``: the paper's BoT50: ResNet-50 (7x7 stem, 3/4/6/3 bottlenecks) with the three c5 blocks turned into BoT
  blocks; the first one strides by a 2x2 average pooling after the attention, as in the paper. The convolutions
  load from a torchvision/mmdet ResNet-50 checkpoint; the MHSA parameters are new;
* the other members of timm's BoTNet family with ImageNet weights, ``'se33ts'`` (``sebotnet33ts_256``: SiLU, SE,
  no stem pool, 1536-channel C5) and ``'eca26ts'`` (``eca_botnext26ts_256``: SiLU, ECA, grouped 3x3 convs).

Variable input sizes
--------------------
The official TensorFlow code and every PyTorch port fix the feature-map size at construction: the relative logits
use two 1-D tables ``height_rel`` ((2H-1, d)) and ``width_rel`` ((2W-1, d)) whose length encodes the map size, and
they assert on it. Here each table keeps the length of its *reference* size (the pretraining image size, stored in
the checkpoint) and is interpolated at run time to the actual map: ``resize_1d_table`` (linear,
``align_corners=False``) maps the (2S-1) relative offsets -(S-1)..(S-1) onto -(h-1)..(h-1); the offset 0 maps exactly
onto offset 0 and the table's extent scales with the map, as position-embedding interpolation does for ViTs. Height
and width are resized independently, so non-square maps get two tables of different lengths. The resized tables are
cached per size (:class:`SizeCache`) when no gradient is needed. At the reference size no interpolation happens, so
the official model is reproduced exactly. A checkpoint whose tables were made for another reference size is
resized the same way when it is loaded (``load_state_dict`` pre-hook).

Any input size: all strided operators are 3x3/2 convolutions with padding 1, 1x1/2 convolutions, a 3x3/2 max-pool
with padding 1 and a 2x2/2 average pool with ``ceil_mode`` (partial windows average their valid cells), all of which
produce ``ceil(size / 2)``; level ``i`` therefore has exactly ``ceil(H / 2**(i+2))`` rows without padding or cropping.

Attention goes through the shared SDPA :func:`attention`; the relative logits are its additive bias.
"""
import re
from collections import OrderedDict
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import DropPath, EcaModule, SEModule, make_divisible

from ...checkpoint import StateDict
from ...registry import register_model
from ..layers import Size2d, SizeCache, attention, channels_last_conv_weights, resize_1d_table
from .base import OfficialWeights, PyramidBackbone

_ACTIVATIONS = {'relu': nn.ReLU, 'silu': nn.SiLU, 'gelu': nn.GELU}


_TORCH_NORMS = {'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}


def build_norm(cfg: dict, channels: int) -> nn.Module:
    """A norm layer from an mmcv-style config (``dict(type='BN', requires_grad=False, eps=...)``).

    BatchNorm/SyncBN are built with torch alone, so the backbone imports and runs with torch + timm + mmengine only
    (benchmarks, export); any other type goes through mmcv's ``build_norm_layer``, imported only then.
    """
    cfg = dict(cfg)
    norm_type, requires_grad = cfg.pop('type'), cfg.pop('requires_grad', True)
    if norm_type in _TORCH_NORMS:
        layer = _TORCH_NORMS[norm_type](channels, **cfg)
        for param in layer.parameters():
            param.requires_grad = requires_grad
        return layer
    from mmcv.cnn import build_norm_layer  # lazily: GN, IN, ... from mmcv's registry
    return build_norm_layer(dict(cfg, type=norm_type, requires_grad=requires_grad), channels)[1]


def _activation(name: str) -> nn.Module:
    return nn.GELU() if name == 'gelu' else _ACTIVATIONS[name](inplace=True)
STAGE_STRIDES = (1, 2, 2, 2)  # after a stride-4 stem: 4 / 8 / 16 / 32


def _pair(value: Union[int, Sequence[int]]) -> Size2d:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f'expected an int or a pair of ints, got {value!r}')
    return value  # type: ignore[return-value]


class ConvNormAct(nn.Sequential):
    """conv (no bias) -> norm -> optional activation; submodules ``conv`` and ``bn`` as in timm's ConvNormAct."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm_cfg: Optional[dict] = None, act: Optional[str] = 'relu', groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = build_norm(norm_cfg or dict(type='BN'), out_channels)
        if act is not None:
            self.act = _activation(act)


# the SE and ECA gates of the published (timm) BoTNets
_CHANNEL_ATTENTION = {'se': SEModule, 'eca': EcaModule}


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 -> 3x3 (carries the stride; grouped when ``group_width``) -> [SE/ECA] -> 1x1, with a
    projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int, norm_cfg: dict,
                 act: str, drop_path: float = 0.0, group_width: Optional[int] = None,
                 channel_attn: Optional[str] = None):
        super().__init__()
        self.shortcut = (ConvNormAct(in_channels, out_channels, 1, stride, norm_cfg, act=None)
                         if in_channels != out_channels or stride != 1 else nn.Identity())
        self.conv1 = ConvNormAct(in_channels, mid_channels, 1, 1, norm_cfg, act)
        groups = mid_channels // group_width if group_width else 1
        self.conv2 = ConvNormAct(mid_channels, mid_channels, 3, stride, norm_cfg, act, groups=groups)
        self.channel_attn = _CHANNEL_ATTENTION[channel_attn](mid_channels) if channel_attn else nn.Identity()
        self.conv3 = ConvNormAct(mid_channels, out_channels, 1, 1, norm_cfg, act=None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = _activation(act)

    @property
    def last_norm(self) -> nn.Module:
        return self.conv3.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, ceil(H/s), ceil(W/s))
        out = self.conv3(self.channel_attn(self.conv2(self.conv1(x))))
        return self.act(self.drop_path(out) + self.shortcut(x))


class RelPosSelfAttention(nn.Module):
    """Global MHSA over a feature map with BoTNet's 2-D relative position logits.

    The logit between query (y, x) and key (y', x') is ``q.k * scale + q.R_h[y'-y] + q.R_w[x'-x]`` (times ``scale``
    as a whole when ``scale_pos_embed``, as in the paper's reference code; timm's botnet26t leaves the position
    term unscaled). ``R_h``/``R_w`` are the rows of ``height_rel``/``width_rel`` at offset + (S-1).
    q/k have ``num_heads * dim_head`` channels, v has ``dim`` channels (``dim // num_heads`` per head); the 1x1
    projection lays its output out as [q | k | v], each head-major. A stride of 2 average-pools the output 2x2.
    """

    def __init__(self, dim: int, num_heads: int, dim_head: Optional[int], feat_size: Size2d, stride: int = 1,
                 scale_pos_embed: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'BoTNet: attention width {dim} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.dim_head = dim_head or make_divisible(dim, 8) // num_heads
        self.dim_head_v = dim // num_heads
        self.scale = self.dim_head ** -0.5
        self.scale_pos_embed = scale_pos_embed
        self.feat_size = feat_size  # the size the tables are laid out for (their length is 2S - 1)
        self.qkv = nn.Conv2d(dim, 2 * num_heads * self.dim_head + dim, 1, bias=False)
        self.height_rel = nn.Parameter(torch.empty(2 * feat_size[0] - 1, self.dim_head))
        self.width_rel = nn.Parameter(torch.empty(2 * feat_size[1] - 1, self.dim_head))
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.height_cache = SizeCache(max_entries=16)
        self.width_cache = SizeCache(max_entries=16)
        nn.init.trunc_normal_(self.qkv.weight, std=dim ** -0.5)  # fan-in
        nn.init.trunc_normal_(self.height_rel, std=self.scale)
        nn.init.trunc_normal_(self.width_rel, std=self.scale)
        self.register_load_state_dict_pre_hook(self._resize_tables_on_load)

    @staticmethod
    def _resize_tables_on_load(module: 'RelPosSelfAttention', state_dict: dict, prefix: str, *args) -> None:
        """Checkpoint tables made for another reference size are interpolated to this module's length."""
        for name in ('height_rel', 'width_rel'):
            key = prefix + name
            own = getattr(module, name)
            table = state_dict.get(key)
            if (isinstance(table, torch.Tensor) and table.dim() == 2 and table.shape[1] == own.shape[1]
                    and table.shape[0] != own.shape[0]):
                state_dict[key] = resize_1d_table(table, own.shape[0])

    @staticmethod
    def _absolute_table(table: torch.Tensor, length: int) -> torch.Tensor:
        """(2S-1, d) relative table -> (L, L, d) with entry [i, j] = logit weights of offset j - i at length L."""
        table = resize_1d_table(table, 2 * length - 1)
        pos = torch.arange(length, device=table.device)
        return table[pos[None, :] - pos[:, None] + length - 1]

    def relative_logits(self, q: torch.Tensor, hw: Size2d) -> torch.Tensor:
        """q: (B, heads, H*W, d) -> relative logits (B, heads, H*W, H*W)."""
        h, w = hw
        rel_h = self.height_cache.get(h, [self.height_rel], lambda: self._absolute_table(self.height_rel, h))
        rel_w = self.width_cache.get(w, [self.width_rel], lambda: self._absolute_table(self.width_rel, w))
        q = q.reshape(q.shape[0], q.shape[1], h, w, q.shape[-1])
        # batched matmuls over the row (resp. column) index, not einsum, which ONNX has only from opset 12. The
        # column product comes out x-major, and the broadcast sum below would inherit that order: its reshape to
        # (N, N) would then copy the whole (N, N) bias. Contiguous small maps give a contiguous sum.
        logits_h = q @ rel_h.to(q.dtype).transpose(1, 2)  # (B, n, H, W, H'): y' - y
        logits_w = (q.transpose(2, 3) @ rel_w.to(q.dtype).transpose(1, 2)).transpose(2, 3).contiguous()  # x' - x
        logits = logits_h[..., :, None] + logits_w[..., None, :]  # (B, n, H, W, H', W'), contiguous
        return logits.reshape(q.shape[0], q.shape[1], h * w, h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s))
        b, _, h, w = x.shape
        n, inner_qk = self.num_heads, self.num_heads * self.dim_head
        # token-major (B, N, 3C') projection, so that q/k/v are (B, n, N, d) views with unit stride along d: the
        # layout SDPA's fused CPU kernel takes (a d-strided one falls back to the unfused path). On a channels-last
        # map (as BoTNet.forward runs) the permute is free.
        qkv = self.qkv(x).permute(0, 2, 3, 1).reshape(b, h * w, -1)
        q, k, v = torch.split(qkv, [inner_qk, inner_qk, n * self.dim_head_v], dim=2)
        q = q.unflatten(2, (n, self.dim_head)).transpose(1, 2)  # (B, n, N, d)
        k = k.unflatten(2, (n, self.dim_head)).transpose(1, 2)
        v = v.unflatten(2, (n, self.dim_head_v)).transpose(1, 2)  # (B, n, N, dv)
        # the paper's code scales q before both terms; scaling the small q is cheaper than the (N, N) bias
        bias = self.relative_logits(q * self.scale if self.scale_pos_embed else q, (h, w))
        out = attention(q, k, v, bias=bias, scale=self.scale)  # (B, n, N, dv)
        # back to (B, C, H, W), a free view with channels-last strides when SDPA returned token-major storage
        out = out.transpose(1, 2).reshape(b, h, w, n * self.dim_head_v).permute(0, 3, 1, 2)
        return self.pool(out)


class BoTBlock(nn.Module):
    """Bottleneck Transformer block: 1x1 -> MHSA (+ 2x2 avg-pool when strided) -> BN-act -> 1x1, as a residual."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int, norm_cfg: dict,
                 act: str, num_heads: int, dim_head: Optional[int], feat_size: Size2d, scale_pos_embed: bool,
                 drop_path: float = 0.0, mhsa_norm_cfg: Optional[dict] = None):
        super().__init__()
        self.shortcut = (ConvNormAct(in_channels, out_channels, 1, stride, norm_cfg, act=None)
                         if in_channels != out_channels or stride != 1 else nn.Identity())
        self.conv1 = ConvNormAct(in_channels, mid_channels, 1, 1, norm_cfg, act)
        self.mhsa = RelPosSelfAttention(mid_channels, num_heads, dim_head, feat_size, stride, scale_pos_embed)
        self.mhsa_norm = build_norm(mhsa_norm_cfg or norm_cfg, mid_channels)
        self.mhsa_act = _activation(act)
        self.conv3 = ConvNormAct(mid_channels, out_channels, 1, 1, norm_cfg, act=None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = _activation(act)

    @property
    def last_norm(self) -> nn.Module:
        return self.conv3.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, ceil(H/s), ceil(W/s))
        out = self.mhsa_act(self.mhsa_norm(self.mhsa(self.conv1(x))))
        out = self.conv3(out)
        return self.act(self.drop_path(out) + self.shortcut(x))


_TIMM_URL = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-attn-weights/'


@register_model
class BoTNet(PyramidBackbone):
    """BoTNet backbone: a ResNet with BoT (MHSA) blocks, C2..C5 outputs at strides 4/8/16/32 for any input size.

    Args:
        arch: ``'26t'`` (timm ``botnet26t_256``; aliases ``'botnet26t'``, ``'botnet26t_256'``), ``'50'`` (the
            paper's BoT50; aliases ``'bot50'``, ``'botnet50'``), ``'se33ts'`` (``sebotnet33ts_256``), ``'eca26ts'``
            (``eca_botnext26ts_256``) or a dict with

            * ``stem_channels``: channels of the stem convs; one entry = a 7x7/2 conv, several = a stack of 3x3 convs
              (the first strided);
            * ``depths``, ``channels``: blocks and output width of the 4 stages;
            * ``attn_blocks``: per stage, the indices of the blocks that are BoT (MHSA) blocks;

            and optionally ``stem_pool`` (True: a 3x3/2 max-pool ends the stem; False: the last stem conv strides),
            ``bottle_ratio`` (0.25; one float or one per stage), ``group_width`` (channels per group of the 3x3
            convs, None: dense), ``channel_attn`` (None | 'se' | 'eca' in the convolutional blocks), ``num_heads``
            (4), ``dim_head`` (None: block width / heads), ``scale_pos_embed`` (scale the relative logits too, as
            the paper's code), ``act`` ('relu' | 'silu' | 'gelu'), ``img_size`` (default ``pretrain_img_size``) and
            ``new_attention`` (the MHSA parameters are not in the checkpoint the arch starts from).
        pretrain_img_size: image size (int or (H, W)) the relative-position tables are laid out for: a BoT block whose
            input has stride ``s`` gets tables of ``2 * ceil(size / s) - 1`` rows. Defaults to the arch's
            ``img_size`` (256 for the timm variants, the size of their weights; 1024 for BoT50, the paper's
            detection size). Checkpoints made for another size are interpolated when loaded; at run time the tables
            follow the actual feature-map size.
        norm_cfg: norm layers (mmcv config); detection configs use ``dict(type='BN', requires_grad=False)`` with
            ``norm_eval=True`` as mmdet's ResNet.
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
        zero_init_residual: zero-initialise the last BN of every block (mmdet ResNet / timm default).
        in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see :class:`PyramidBackbone`.
    """

    arch_zoo = {
        '26t': dict(stem_channels=(24, 32, 64), depths=(2, 2, 2, 2), channels=(256, 512, 1024, 2048),
                    attn_blocks=((), (), (1, ), (0, 1)), act='relu', img_size=256),
        '50': dict(stem_channels=(64, ), depths=(3, 4, 6, 3), channels=(256, 512, 1024, 2048),
                   attn_blocks=((), (), (), (0, 1, 2)), act='relu', scale_pos_embed=True, img_size=1024,
                   new_attention=True),
        'se33ts': dict(stem_channels=(24, 32, 64), stem_pool=False, depths=(2, 3, 3, 2),
                       channels=(256, 512, 1024, 1536), attn_blocks=((), (2, ), (2, ), (0, 1)),
                       bottle_ratio=(0.25, 0.25, 0.25, 0.333), channel_attn='se', act='silu', img_size=256),
        'eca26ts': dict(stem_channels=(24, 32, 64), depths=(2, 2, 2, 2), channels=(256, 512, 1024, 2048),
                        attn_blocks=((), (), (1, ), (0, 1)), group_width=16, channel_attn='eca', dim_head=16,
                        act='silu', img_size=256),
    }
    arch_aliases = {'botnet26t': '26t', 'botnet26t_256': '26t', 'bot50': '50', 'botnet50': '50',
                    'sebotnet33ts': 'se33ts', 'sebotnet33ts_256': 'se33ts', 'eca_botnext26ts': 'eca26ts',
                    'eca_botnext26ts_256': 'eca26ts'}
    essential_keys = ('stem_channels', 'depths', 'channels', 'attn_blocks')
    arch_defaults = dict(stem_pool=True, bottle_ratio=0.25, group_width=None, channel_attn=None, num_heads=4,
                         dim_head=None, scale_pos_embed=False, act='relu', img_size=256, new_attention=False)
    official_weights = {
        '26t': OfficialWeights('26t', _TIMM_URL + 'botnet26t_c1_256-167a0e9f.pth', 'Apache-2.0', 79.256, 256,
                               note="timm's botnet26t_256.c1_in1k"),
        'se33ts': OfficialWeights('se33ts', _TIMM_URL + 'sebotnet33ts_a1h2_256-957e3c3e.pth', 'Apache-2.0', 81.156,
                                  256, note="timm's sebotnet33ts_256.a1h_in1k"),
        'eca26ts': OfficialWeights('eca26ts', _TIMM_URL + 'eca_botnext26ts_c_256-95a898f6.pth', 'Apache-2.0',
                                   79.262, 256, note="timm's eca_botnext26ts_256.c1_in1k"),
        '50': OfficialWeights('50', 'https://download.pytorch.org/models/resnet50-0676ba61.pth', 'BSD-3-Clause',
                              76.13, note="BoT50 starts from torchvision's ResNet-50 (checkpoint="
                              "'torchvision://resnet50'); the attention blocks are new"),
    }
    weights_note = ('The timm files are also on the Hugging Face hub as timm/<name>; torchvision, mmdet and '
                    'mmpretrain ResNet-50 files load into arch 50.')

    def __init__(self, arch: Union[str, dict] = '26t', in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, pretrain_img_size: Optional[Union[int, Sequence[int]]] = None,
                 norm_cfg: Optional[dict] = None, drop_path_rate: float = 0.0, zero_init_residual: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        s = self.arch_settings = self._check_arch(self.arch_settings)
        self.norm_cfg = norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type='BN', requires_grad=True)
        self.check_drop_path_rate(drop_path_rate)
        img_hw = self.pretrain_img_size = _pair(pretrain_img_size if pretrain_img_size is not None
                                                else s['img_size'])
        act = s['act']

        # stem: stride 4
        stem_channels = list(s['stem_channels'])
        kernel = 7 if len(stem_channels) == 1 else 3
        stem_strides = [2] + [1] * (len(stem_channels) - 1)
        if not s['stem_pool']:
            stem_strides[-1] *= 2
        stem = OrderedDict()
        prev = in_channels
        for i, (ch, stride) in enumerate(zip(stem_channels, stem_strides)):
            stem[f'conv{i + 1}'] = ConvNormAct(prev, ch, kernel, stride, norm_cfg, act)
            prev = ch
        if s['stem_pool']:
            stem['pool'] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stem = nn.Sequential(stem)

        # stages: block j of stage i is a BoT block when j is in attn_blocks[i], a bottleneck otherwise
        self.num_layers = sum(s['depths'])
        dpr = [drop_path_rate * k / max(self.num_layers - 1, 1) for k in range(self.num_layers)]
        self.stages = nn.ModuleList()
        self.block_offsets: List[int] = []
        new_prefixes: List[str] = []
        # BoT50's MHSA is new (not in the ResNet-50 it starts from): its BN has no pretrained statistics to keep, so
        # it always learns (affine and statistics), also under the frozen-BN detection setting
        mhsa_norm_cfg = dict(norm_cfg, requires_grad=True) if s['new_attention'] else norm_cfg
        index, net_stride = 0, 4
        for i, (depth, ch, ratio) in enumerate(zip(s['depths'], s['channels'], s['bottle_ratio'])):
            mid = make_divisible(ch * ratio)
            self.block_offsets.append(index)
            blocks = []
            for j in range(depth):
                stride = STAGE_STRIDES[i] if j == 0 else 1
                if j in s['attn_blocks'][i]:
                    # attention runs at the block's input resolution (a strided block pools afterwards)
                    feat = (-(-img_hw[0] // net_stride), -(-img_hw[1] // net_stride))
                    blocks.append(BoTBlock(prev, ch, mid, stride, norm_cfg, act, s['num_heads'], s['dim_head'], feat,
                                           s['scale_pos_embed'], dpr[index], mhsa_norm_cfg))
                    new_prefixes += [f'stages.{i}.{j}.mhsa.', f'stages.{i}.{j}.mhsa_norm.']
                else:
                    blocks.append(Bottleneck(prev, ch, mid, stride, norm_cfg, act, dpr[index], s['group_width'],
                                             s['channel_attn']))
                prev = ch
                net_stride *= stride
                index += 1
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels: Tuple[int, ...] = tuple(s['channels'])
        # BoT50 starts from a ResNet-50 checkpoint, which has no MHSA: those parameters are reported as new
        self.new_param_prefixes = tuple(new_prefixes) if s['new_attention'] else ()

        self._init_params(zero_init_residual)
        self._freeze_stages()
        # NHWC weights (and an NHWC input in forward): oneDNN/cuDNN's fast layout, and free token views for MHSA
        channels_last_conv_weights(self)

    # ----------------------------------------------------------------------------------------------------- arguments
    @classmethod
    def _check_arch(cls, settings: dict) -> dict:
        s = dict(cls.arch_defaults, **settings)

        def fail(msg: str) -> None:
            raise ValueError(f'BoTNet arch: {msg}')

        if not isinstance(s['stem_channels'], (list, tuple)) or not s['stem_channels'] or not all(
                isinstance(c, int) and c > 0 for c in s['stem_channels']):
            fail(f'stem_channels must be a non-empty list of positive ints, got {s["stem_channels"]!r}')
        if isinstance(s['bottle_ratio'], (int, float)):
            s['bottle_ratio'] = (s['bottle_ratio'], ) * 4
        for key in ('depths', 'channels', 'attn_blocks', 'bottle_ratio'):
            if not isinstance(s[key], (list, tuple)) or len(s[key]) != 4:
                fail(f'{key} must have one entry per stage (4), got {s[key]!r}')
        if not all(isinstance(d, int) and d >= 1 for d in s['depths']):
            fail(f'depths must be positive ints, got {s["depths"]!r}')
        if not all(isinstance(c, int) and c > 0 for c in s['channels']):
            fail(f'channels must be positive ints, got {s["channels"]!r}')
        if not all(isinstance(r, (int, float)) and 0 < r <= 4 for r in s['bottle_ratio']):
            fail(f'bottle_ratio must be in (0, 4], got {s["bottle_ratio"]!r}')
        s['attn_blocks'] = tuple(tuple(b) for b in s['attn_blocks'])
        for depth, blocks in zip(s['depths'], s['attn_blocks']):
            if not all(isinstance(j, int) and 0 <= j < depth for j in blocks):
                fail(f'attn_blocks {s["attn_blocks"]!r} must index blocks of their stage (depths {s["depths"]!r})')
        if s['act'] not in _ACTIVATIONS:
            fail(f'act must be one of {sorted(_ACTIVATIONS)}, got {s["act"]!r}')
        if s['channel_attn'] not in (None, *_CHANNEL_ATTENTION):
            fail(f'channel_attn must be None or one of {sorted(_CHANNEL_ATTENTION)}, got {s["channel_attn"]!r}')
        if not isinstance(s['num_heads'], int) or s['num_heads'] < 1:
            fail(f'num_heads must be a positive int, got {s["num_heads"]!r}')
        for key in ('dim_head', 'group_width'):
            if s[key] is not None and (not isinstance(s[key], int) or s[key] < 1):
                fail(f'{key} must be None or a positive int, got {s[key]!r}')
        for ch, ratio in zip(s['channels'], s['bottle_ratio']):
            mid = make_divisible(ch * ratio)
            if mid % s['num_heads'] or (s['group_width'] and mid % s['group_width']):
                fail(f'block width {mid} (channels {ch} x bottle_ratio {ratio}) must be divisible by num_heads='
                     f'{s["num_heads"]} and group_width={s["group_width"]}')
        return s

    def _init_params(self, zero_init_residual: bool) -> None:
        for name, m in self.named_modules():  # the MHSA projection keeps its own fan-in initialisation
            if isinstance(m, nn.Conv2d) and not name.endswith('mhsa.qkv'):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if zero_init_residual:  # every block starts as the identity (mmdet ResNet, timm)
            for stage in self.stages:
                for block in stage:
                    nn.init.zeros_(block.last_norm.weight)

    # ------------------------------------------------------------------------------------------------------- forward
    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x: (B, C, H, W) -> maps (B, C_i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2))) for i in out_indices."""
        x = self.stem(x.contiguous(memory_format=torch.channels_last))  # (B, C_stem, ceil(H/4), ceil(W/4))
        levels = {}
        for i, stage in enumerate(self.stages[:max(self.out_indices) + 1]):
            for block in stage:
                x = self.checkpoint(block, x)
            levels[i] = x
        return [levels[i] for i in self.out_indices]

    # ------------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        return [self.stem] + list(self.stages[:frozen_stages])

    def layer_depth(self, name: str) -> int:
        if name.startswith('stem.'):
            return 0
        match = re.match(r'stages\.(\d+)\.(\d+)\.', name)
        if match:
            return self.block_offsets[int(match.group(1))] + int(match.group(2)) + 1
        return self.num_layers + 1

    # --------------------------------------------------------------------------------------------------- checkpoints
    _TIMM_RENAMES = (('.conv1_1x1.', '.conv1.'), ('.conv2_kxk.', '.conv2.'), ('.conv3_1x1.', '.conv3.'),
                     ('.self_attn.pos_embed.', '.mhsa.'), ('.self_attn.', '.mhsa.'), ('.post_attn.', '.mhsa_norm.'),
                     ('.attn.', '.channel_attn.'))

    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        """timm BoTNet / torchvision, mmdet or mmpretrain ResNet keys -> this module's; drops classifiers.

        timm: ``conv1_1x1``/``conv2_kxk``/``conv3_1x1`` -> ``conv1``/``conv2``/``conv3``; ``self_attn.qkv`` ->
        ``mhsa.qkv``; ``self_attn.pos_embed.{height,width}_rel`` -> ``mhsa.{height,width}_rel``; ``post_attn`` ->
        ``mhsa_norm``; SE/ECA ``attn`` -> ``channel_attn``; ``head``/``final_conv`` dropped.
        ResNet: ``conv1``/``bn1`` -> ``stem.conv1.{conv,bn}``; ``layer{i}.{j}.conv{k}``/``bn{k}`` ->
        ``stages.{i-1}.{j}.conv{k}.{conv,bn}``; ``downsample.{0,1}`` -> ``shortcut.{conv,bn}``; ``fc`` dropped. In
        BoT50 a ResNet's c5 ``conv2``/``bn2`` (the 3x3 convolutions MHSA replaces) have no counterpart and are
        reported as unexpected. Keys already in this layout pass through unchanged.
        """
        converted = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'fc.', 'final_conv.')):
                continue  # classifiers: timm head.fc / final 1x1 conv, torchvision fc, mmpretrain head.fc
            new = key
            match = re.match(r'(conv1|bn1)\.(.+)$', key)
            if match:
                new = f"stem.conv1.{'conv' if match.group(1) == 'conv1' else 'bn'}.{match.group(2)}"
            match = re.match(r'layer(\d+)\.(\d+)\.(conv|bn)(\d)\.(.+)$', key)
            if match:
                i, j, kind, k, rest = match.groups()
                new = f'stages.{int(i) - 1}.{j}.conv{k}.{kind}.{rest}'
            match = re.match(r'layer(\d+)\.(\d+)\.downsample\.([01])\.(.+)$', key)
            if match:
                i, j, part, rest = match.groups()
                new = f"stages.{int(i) - 1}.{j}.shortcut.{'conv' if part == '0' else 'bn'}.{rest}"
            for old, repl in BoTNet._TIMM_RENAMES:
                new = new.replace(old, repl)
            converted[new] = value
        return converted

"""Behaviour shared by every backbone: variants, official weights, argument checks, freezing, checkpoints, layer
depth."""
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as torch_checkpoint
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import StateDict, load_pretrained
from ..layers.traceable import ceil_div, is_exporting

ArchSpec = Union[str, int, Mapping[str, Any]]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class OfficialWeights:
    """One published checkpoint of a family, as its authors released it.

    Attributes:
        arch: the ``arch_zoo`` variant it belongs to.
        url: a direct download link, or the page that links the file when there is none; ``''`` if not released.
        license: the licence the weights are published under (may differ from this package's).
        top1: the published ImageNet-1k top-1 accuracy (%) of this checkpoint, if any.
        input_size: the (square) resolution it was trained and evaluated at.
        mean, std: the input normalisation it expects (0..1 scale; multiply by 255 for mmdet/mmseg preprocessors).
        file: the published file name (where the URL does not end in it).
        kwargs: constructor arguments besides ``arch`` it needs (e.g. ``patch_size=8``, ``pretrain_img_size=384``).
        note: anything else a user must know to load it.
    """

    arch: str
    url: str
    license: str
    top1: Optional[float] = None
    input_size: int = 224
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    file: str = ''
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    note: str = ''

    def describe(self) -> str:
        where = self.url or 'not released'
        extra = [f'file {self.file}'] if self.file and not self.url.endswith(self.file) else []
        extra += [self.note] if self.note else []
        return where + (f' ({"; ".join(extra)})' if extra else '')


class PyramidBackbone(BaseModule):
    """Base class: a backbone that returns a tuple of NCHW maps at strides 4/8/16/32.

    :meth:`forward` is the same for every family: it checks the input, answers an empty batch, calls the family's
    :meth:`forward_pyramid` and crops each level to ``ceil(size / level_strides[i])``. Subclasses define:
      * ``forward_pyramid(x)``: the maps of ``out_indices`` (single-scale families get it from
        :class:`~mmvit_backbones.models.backbones.single_scale.SingleScaleBackbone`);
      * ``arch_zoo``: ``{variant: settings}`` (canonical names only; other names in ``arch_aliases``), the
        ``essential_keys`` a custom arch dict must have and ``arch_defaults`` for the optional ones;
      * ``official_weights``: ``{weights name: OfficialWeights}``, the published checkpoints (``weights_hint``, the
        message shown when a checkpoint file is missing, is made from it and ``weights_note``);
      * ``frozen_modules(i)``: the modules frozen by ``frozen_stages = i`` (0: stem only; i: stem + stages < i);
      * ``layer_depth(name)`` and ``num_layers`` for layer-wise learning-rate decay;
      * ``convert_checkpoint`` (staticmethod): official key layout -> this module's (idempotent);
      * ``new_param_prefixes``: parts that no ImageNet checkpoint has (dense-prediction adapters): reported as new
        when a checkpoint loads, and their BatchNorms keep learning under ``norm_eval``.
    """

    arch_zoo: Dict[str, dict] = {}
    arch_aliases: Dict[str, str] = {}
    essential_keys: Tuple[str, ...] = ()
    arch_defaults: Dict[str, Any] = {}
    official_weights: Dict[str, OfficialWeights] = {}
    weights_note: str = ''
    num_levels: int = 4
    #: stride of each output level (level ``i`` has ``ceil(H / stride)`` x ``ceil(W / stride)`` cells)
    level_strides: Tuple[int, ...] = (4, 8, 16, 32)
    num_stages: int = 4
    min_input_size: int = 32
    weights_hint: str = ''
    new_param_prefixes: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if 'official_weights' in cls.__dict__ or 'weights_note' in cls.__dict__:
            listed = '; '.join(f'{name}: {w.describe()}' for name, w in cls.official_weights.items())
            cls.weights_hint = ' '.join(part for part in (f'official weights: {listed}.' if listed else '',
                                                          cls.weights_note) if part)

    def __init__(self, arch: ArchSpec, in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.resolve_arch(arch)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'{type(self).__name__}: in_channels must be a positive int, got {in_channels!r}')
        self.in_channels = in_channels
        self.out_indices = self._check_out_indices(out_indices, self.num_levels)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages must be in [-1, {self.num_stages}] '
                             f'(-1: nothing frozen, 0: the stem, i: the stem and the first i stages), '
                             f'got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    # ----------------------------------------------------------------------------------------------------- arguments
    @classmethod
    def resolve_arch(cls, arch: ArchSpec) -> dict:
        """The settings of ``arch``: a variant name of ``arch_zoo`` or ``arch_aliases`` (case-insensitive; numeric
        names also as numbers, e.g. ``14``), or a dict of ``essential_keys`` plus any of ``arch_defaults``. Optional
        keys the dict (or the variant) leaves out take their ``arch_defaults`` value."""
        if isinstance(arch, int) and not isinstance(arch, bool):
            arch = str(arch)  # e.g. --cfg-options model.backbone.arch=14, which mmengine parses to an int
        if isinstance(arch, str):
            key = cls.arch_aliases.get(arch.lower(), arch.lower())
            if key not in cls.arch_zoo:
                names = sorted(cls.arch_zoo) + sorted(cls.arch_aliases)
                raise ValueError(f'{cls.__name__}: unknown arch {arch!r}; choose one of {names} or pass a dict '
                                 f'with the keys {sorted(cls.essential_keys)}')
            return {**copy.deepcopy(cls.arch_defaults), **copy.deepcopy(cls.arch_zoo[key])}
        if isinstance(arch, Mapping):
            missing = set(cls.essential_keys) - set(arch)
            unknown = set(arch) - set(cls.essential_keys) - set(cls.arch_defaults)
            if missing or unknown:
                problem = f'missing {sorted(missing)}' if missing else f'unknown {sorted(unknown)}'
                raise ValueError(f'{cls.__name__}: a custom arch dict needs the keys {sorted(cls.essential_keys)} '
                                 f'and may set {sorted(cls.arch_defaults)}; {problem}')
            return {**copy.deepcopy(cls.arch_defaults), **copy.deepcopy(dict(arch))}
        raise TypeError(f'{cls.__name__}: arch must be a variant name or a dict, got {type(arch).__name__}')

    @classmethod
    def _check_out_indices(cls, out_indices: Union[int, Sequence[int]], num: int) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        result = []
        for i in out_indices:
            if not isinstance(i, int) or not -num <= i < num:
                raise ValueError(f'{cls.__name__}: out_indices entries must be ints in [{-num}, {num - 1}] '
                                 f'(one per output level), got {tuple(out_indices)!r}')
            result.append(i % num)
        if not result or len(set(result)) != len(result):
            raise ValueError(f'{cls.__name__}: out_indices must be non-empty and without repeats, got '
                             f'{tuple(out_indices)!r}')
        return tuple(result)

    @classmethod
    def check_drop_path_rate(cls, drop_path_rate: float) -> None:
        if not isinstance(drop_path_rate, (int, float)) or not 0 <= drop_path_rate < 1:
            raise ValueError(f'{cls.__name__}: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')

    def check_input(self, x: torch.Tensor) -> None:
        """Clear errors for inputs the backbone cannot process (instead of a shape error deep inside)."""
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects a batch of images (N, C, H, W), got shape '
                             f'{tuple(x.shape)}')
        if is_exporting():  # traced sizes: a check would pin the export size into the graph (ONNX has no raise)
            return
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{type(self).__name__} was built for {self.in_channels}-channel input but got '
                             f'{x.shape[1]} channels (shape {tuple(x.shape)}); set in_channels={x.shape[1]} or '
                             f'convert the images (e.g. to RGB).')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f'{type(self).__name__}: input {x.shape[-2]}x{x.shape[-1]} is smaller than the total '
                             f'stride {self.min_input_size}; resize or pad images to at least '
                             f'{self.min_input_size}x{self.min_input_size}.')

    def empty_outputs(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The output maps of a batch of 0 images (a data loader may yield one), shaped as for any other batch:
        token reshapes with ``-1`` and per-image arithmetic cannot infer sizes from 0 elements."""
        h, w = x.shape[-2:]
        strides = self.level_strides
        return tuple(x.new_zeros(0, self.out_channels[i], -(-h // strides[i]), -(-w // strides[i]))
                     for i in self.out_indices)

    # ------------------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) -> the maps of ``out_indices``, level ``i`` of ``ceil(H / s) x ceil(W / s)`` cells with
        ``s = level_strides[i]``, for any H and W of at least ``min_input_size``."""
        self.check_input(x)
        if x.shape[0] == 0:
            return self.empty_outputs(x)
        h, w = x.shape[-2:]
        maps = self.forward_pyramid(x)
        # families pad to whole patches or windows: each level is cropped back to the cells the image covers, and
        # returned in contiguous NCHW memory: mmcv's RoIAlign reads its input as contiguous NCHW whatever the strides,
        # and convolutions keep a channels-last layout, so an R-CNN would pool a channels-last map's scrambled memory
        return tuple(m[..., :ceil_div(h, self.level_strides[i]), :ceil_div(w, self.level_strides[i])].contiguous()
                     for i, m in zip(self.out_indices, maps))

    def forward_pyramid(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        """The family's computation: the maps of ``out_indices`` in order, each covering at least the cells of the
        image at its stride (more where the family padded); called by :meth:`forward` on a checked, non-empty batch.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------------ training
    def frozen_modules(self, frozen_stages: int) -> Iterable[nn.Module]:
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in self.frozen_modules(self.frozen_stages):
            if module is None:
                continue
            if isinstance(module, nn.Parameter):
                module.requires_grad_(False)
                continue
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> 'PyramidBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            # norm_eval keeps *pretrained* statistics; BN layers of new parts (new_param_prefixes) learn theirs
            new_parts = tuple(self.new_param_prefixes)
            for name, module in self.named_modules():
                if isinstance(module, _BatchNorm) and not f'{name}.'.startswith(new_parts):
                    module.eval()
        return self

    def checkpoint(self, function: Callable, *args):
        """Run ``function(*args)`` under activation checkpointing when ``with_cp`` is set and grads are needed."""
        # non-reentrant checkpointing also covers blocks whose input needs no grad (after frozen stages)
        if self.with_cp and self.training and torch.is_grad_enabled():
            return torch_checkpoint.checkpoint(function, *args, use_reentrant=False)
        return function(*args)

    # --------------------------------------------------------------------------------------------------- checkpoints
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> StateDict:
        return state_dict

    def init_weights(self) -> None:
        """Default initialisation, then (for ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``) the
        checkpoint through the converter, so official files load directly."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            return
        self.init_cfg = [c for c in cfgs if c.get('type') != 'Pretrained'] or None
        super().init_weights()
        for cfg in pretrained:
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
        self.init_cfg = cfgs
        self._is_init = True

    # ------------------------------------------------------------------------------------------- layer-wise lr decay
    num_layers: int = 0

    def layer_depth(self, name: str) -> int:
        raise NotImplementedError

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise lr decay, as ``(layer_id, num_layers + 2)``.

        ``0`` is the stem/embedding, ``1..num_layers`` the blocks in order, ``num_layers + 1`` everything after the
        last block (output norms, pyramid adapters) and any parameter outside the backbone (neck, heads).
        """
        total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return total - 1, total
        return min(self.layer_depth(param_name[len(prefix):]), total - 1), total

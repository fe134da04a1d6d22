"""Behaviour shared by every backbone: variants, argument checks, freezing, checkpoints, layer depth."""
import copy
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as torch_checkpoint
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import StateDict, load_pretrained
from ..layers.traceable import is_exporting


class PyramidBackbone(BaseModule):
    """Base class: a backbone that returns a tuple of NCHW maps at strides 4/8/16/32.

    Subclasses define:
      * ``arch_zoo``: ``{name: settings}`` (aliases share one dict) and ``essential_keys`` a custom dict must have;
      * ``frozen_modules(i)``: the modules frozen by ``frozen_stages = i`` (0: stem only; i: stem + stages < i);
      * ``layer_depth(name)`` and ``num_layers`` for layer-wise learning-rate decay;
      * ``convert_checkpoint`` (staticmethod): official key layout -> this module's (idempotent);
      * ``weights_hint``: where the official weights come from (shown when a checkpoint file is missing);
      * ``new_param_prefixes``: parts that no ImageNet checkpoint has (dense-prediction adapters): reported as new
        when a checkpoint loads, and their BatchNorms keep learning under ``norm_eval``.
    """

    arch_zoo: Dict[str, dict] = {}
    essential_keys: Tuple[str, ...] = ()
    num_levels: int = 4
    #: stride of each output level (level ``i`` has ``ceil(H / stride)`` x ``ceil(W / stride)`` cells)
    level_strides: Tuple[int, ...] = (4, 8, 16, 32)
    num_stages: int = 4
    min_input_size: int = 32
    weights_hint: str = ''
    new_param_prefixes: Tuple[str, ...] = ()

    def __init__(self, arch: Union[str, dict], in_channels: int = 3,
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
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """``arch`` is a name of ``arch_zoo`` or a dict with at least ``essential_keys``."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'{cls.__name__}: unknown arch {arch!r}; choose one of {sorted(cls.arch_zoo)} '
                                 f'or pass a dict with keys {sorted(cls.essential_keys)}')
            return copy.deepcopy(cls.arch_zoo[key])
        if isinstance(arch, dict):
            missing = set(cls.essential_keys) - set(arch)
            if missing:
                raise ValueError(f'{cls.__name__}: a custom arch dict needs the keys {sorted(cls.essential_keys)}; '
                                 f'missing {sorted(missing)}')
            return copy.deepcopy(dict(arch))
        raise TypeError(f'{cls.__name__}: arch must be a str or a dict, got {type(arch).__name__}')

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
    def check_block_args(cls, depth: int, feature_block: int, window_size: int, window_block_indexes: Sequence[int],
                         drop_path_rate: float) -> Tuple[int, Tuple[int, ...]]:
        """Checks of the single-scale transformers' block arguments; returns (blocks built, window block indexes)."""
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
        if not isinstance(drop_path_rate, (int, float)) or not 0 <= drop_path_rate < 1:
            raise ValueError(f'{name}: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        return num_blocks, window_block_indexes

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
        """The output maps of a batch of 0 images (a data loader may yield one), shaped as for any other batch.

        Token reshapes with ``-1`` and per-image arithmetic cannot infer sizes from 0 elements, so a backbone's
        ``forward`` returns these instead of running its layers: ``if x.shape[0] == 0: return self.empty_outputs(x)``.
        """
        h, w = x.shape[-2:]
        strides = self.level_strides
        return tuple(x.new_zeros(0, self.out_channels[i], -(-h // strides[i]), -(-w // strides[i]))
                     for i in self.out_indices)

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

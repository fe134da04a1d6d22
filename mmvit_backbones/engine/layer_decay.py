"""Layer-wise learning-rate decay for any mmvit_backbones backbone inside any mmdet/mmseg model.

mmdet's and mmseg's decay constructors dispatch on backbone class names they know (ConvNeXt, BEiT, MAE) and
mmpretrain's needs ``get_layer_depth`` on the top-level model. This one asks the backbone: every backbone of the
package implements ``get_layer_depth(param_name, prefix)``. Usage::

    optim_wrapper = dict(
        constructor='LayerwiseDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.75, norm_decay_mult=0., bias_decay_mult=0.,
                           custom_keys={'pos_embed': dict(decay_mult=0.)}))

A parameter at depth ``d`` of ``L`` (``0`` stem ... ``L-1`` after the last block; neck and heads are at ``L-1``)
gets ``lr * layer_decay_rate ** (L - 1 - d)``. All other ``paramwise_cfg`` options keep mmengine's meaning.
"""
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import register_optim_wrapper_constructor


@register_optim_wrapper_constructor
class LayerwiseDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = float(paramwise_cfg.pop('layer_decay_rate', 1.0))
        if not 0 < self.layer_decay_rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {self.layer_decay_rate}')
        # a non-empty paramwise_cfg makes mmengine build one group per parameter, which this needs
        paramwise_cfg.setdefault('bypass_duplicate', False)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', is_dcn_module=None) -> None:
        start = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # the recursion inside mmengine; decay is applied once, at the top level
            return
        backbone = getattr(module, 'backbone', module)
        backbone_prefix = 'backbone.' if backbone is not module else ''
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'{type(backbone).__name__} has no get_layer_depth(); '
                            f'LayerwiseDecayOptimWrapperConstructor works with mmvit_backbones backbones')
        names = {id(p): n for n, p in module.named_parameters()}
        summary = {}
        for group in params[start:]:
            name = names[id(group['params'][0])]
            depth, total = backbone.get_layer_depth(name, prefix=backbone_prefix)
            scale = self.layer_decay_rate ** (total - 1 - depth)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
            summary.setdefault(depth, [scale, 0])[1] += 1
        print_log('layer-wise lr decay %.3f: ' % self.layer_decay_rate + ', '.join(
            f'depth {d}: x{s:.3g} ({n} params)' for d, (s, n) in sorted(summary.items())), logger='current')

"""The layer-wise lr decay constructor works for every backbone inside a real detector."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import mmvit_backbones  # noqa: F401


def _retinanet(backbone: dict, channels):
    init_default_scope('mmdet')
    return MODELS.build(dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
        backbone=backbone,
        neck=dict(type='FPN', in_channels=list(channels), out_channels=32, start_level=1,
                  add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(type='RetinaHead', num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1,
                       anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[1.0] * 4),
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0))))


def test_layer_decay_lr_follows_depth():
    backbone = MODELS.build(dict(type='PyramidTNT', arch='ti'))
    model = _retinanet(dict(type='PyramidTNT', arch='ti'), backbone.out_channels)
    rate, base_lr = 0.8, 1e-3
    wrapper = build_optim_wrapper(model, dict(
        constructor='LayerwiseDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=rate, norm_decay_mult=0.0,
                           custom_keys={'relative_pos': dict(decay_mult=0.0)})))
    groups = wrapper.optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert sum(len(g['params']) for g in groups) == len(list(model.parameters()))
    total = model.backbone.num_layers + 2
    by_name = {names[id(g['params'][0])]: g for g in groups}
    for name, group in by_name.items():
        depth, num = model.backbone.get_layer_depth(name, prefix='backbone.')
        assert num == total
        assert group['lr'] == pytest.approx(base_lr * rate ** (total - 1 - depth))
    # stem gets the smallest lr, the heads the full lr; weight decay rules still apply
    assert by_name['bbox_head.retina_cls.weight']['lr'] == pytest.approx(base_lr)
    stem = [g['lr'] for n, g in by_name.items() if model.backbone.get_layer_depth(n, 'backbone.')[0] == 0]
    assert stem and max(stem) == pytest.approx(base_lr * rate ** (total - 1))
    assert by_name['backbone.stages.0.relative_pos']['weight_decay'] == 0.0
    assert all(g['weight_decay'] == 0.0 for n, g in by_name.items() if 'norm' in n and n.endswith('weight'))
    # it trains
    x = torch.randn(1, 3, 64, 64)
    loss = sum(o.mean() for o in model.backbone(x))
    wrapper.update_params(loss)


def test_layer_decay_rejects_bad_rate_and_foreign_models():
    with pytest.raises(ValueError, match='layer_decay_rate'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(
            constructor='LayerwiseDecayOptimWrapperConstructor', optimizer=dict(type='SGD', lr=0.1),
            paramwise_cfg=dict(layer_decay_rate=1.5)))
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(
            constructor='LayerwiseDecayOptimWrapperConstructor', optimizer=dict(type='SGD', lr=0.1),
            paramwise_cfg=dict(layer_decay_rate=0.9)))

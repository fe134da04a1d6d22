"""Every config shipped in configs/ builds, trains one step as DDP requires, and runs one inference step.

Parametrised over the folder, so each new config is covered automatically. The real pipelines, datasets,
optimizer-wrapper constructors and models of the config run; only data, scale and pretrained weights change.

The training step also checks what multi-GPU training needs and a single-GPU run would not notice:

* every trainable backbone and neck parameter receives a gradient: DDP with mmengine's default
  ``find_unused_parameters=False`` fails at the second iteration otherwise (e.g. a stride-4 branch built for a
  RetinaNet whose FPN never reads it);
* the levels the backbone returns are exactly what the neck (or the segmentation heads) consume: as many levels,
  with the channels the neck expects, and none returned only to be ignored.
"""
import glob
import os.path as osp
from typing import List, Sequence

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')))


def test_configs_exist():
    names = {osp.basename(c) for c in CONFIGS}
    for name in ('retinanet_pyramidtnt_s_1x.py', 'maskrcnn_pyramidtnt_s_1x.py', 'maskrcnn_pyramidtnt_s_3x.py',
                 'cascade_maskrcnn_pyramidtnt_s_3x.py', 'upernet_pyramidtnt_s_160k.py'):
        assert name in names


def _consumed_channels(model) -> List[int]:
    """Channels of each backbone level, in order, as the neck / segmentation heads read them (all levels)."""
    neck = getattr(model, 'neck', None)
    if neck is not None:
        neck = neck[0] if isinstance(neck, torch.nn.Sequential) else neck
        channels = list(neck.in_channels)
        # mmdet's FPN reads levels [start_level, backbone_end_level): a level outside is computed for nothing
        start, end = getattr(neck, 'start_level', 0), getattr(neck, 'backbone_end_level', len(channels))
        assert (start, end) == (0, len(channels)), (
            f'the neck reads backbone levels [{start}, {end}) of {len(channels)}: drop the others from out_indices '
            f'and set start_level=0')
        return channels
    aux = getattr(model, 'auxiliary_head', None)
    heads = [model.decode_head] + (list(aux) if isinstance(aux, torch.nn.ModuleList) else [aux] if aux else [])
    by_level = {}
    for head in heads:
        index = head.in_index if isinstance(head.in_index, (list, tuple)) else [head.in_index]
        channels = head.in_channels if isinstance(head.in_channels, (list, tuple)) else [head.in_channels]
        for i, c in zip(index, channels):
            assert by_level.setdefault(i, c) == c, f'heads disagree on the channels of level {i}'
    assert sorted(by_level) == list(range(len(model.decode_head.in_channels))), (
        f'the heads read levels {sorted(by_level)}')
    return [by_level[i] for i in sorted(by_level)]


def _check_levels(model, maps: Sequence[torch.Tensor]) -> None:
    backbone = model.backbone
    returned = [m.shape[1] for m in maps]
    declared = [backbone.out_channels[i] for i in backbone.out_indices]
    assert returned == declared, f'backbone returns {returned} channels, its out_channels say {declared}'
    consumed = _consumed_channels(model)
    assert returned == consumed, (
        f'{type(backbone).__name__} returns {len(returned)} levels of {returned} channels; the neck/heads read '
        f'{len(consumed)} levels of {consumed}')


def _parameters_without_gradient(model) -> List[str]:
    """Trainable backbone and neck parameters that no loss reached (``grad is None``)."""
    parts = [('backbone', model.backbone)]
    if getattr(model, 'neck', None) is not None:
        parts.append(('neck', model.neck))
    return [f'{prefix}.{name}' for prefix, part in parts for name, p in part.named_parameters()
            if p.requires_grad and p.grad is None]


def _lighten_heads(model) -> None:
    """CPU economy for detectors, structure unchanged: heads 32 channels wide after the neck (the backbone and the
    neck's inputs stay as configured) and RoI heads trained on 64 sampled RoIs of 200 proposals instead of 512 of
    2000, which is what makes a Cascade Mask R-CNN step cost seconds instead of a minute on 2 cores."""
    from mmvit_backbones.testing.cpu_configs import narrow_detector
    narrow_detector(model, 32)

    def cap(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get('sampler'), dict) and node['sampler'].get('num', 0) > 64:
                node['sampler']['num'] = 64
            for key in ('nms_pre', 'max_per_img'):
                if isinstance(node.get(key), int) and node[key] > 200 and 'nms' in node:
                    node[key] = 200
            for value in node.values():
                cap(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                cap(value)

    cap(model.get('train_cfg'))
    cap(model.get('test_cfg'))


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.basename(c)[:-3] for c in CONFIGS])
def test_config_trains_and_infers_one_step(config, coco_shapes, ade_shapes):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.testing.cpu_configs import shrink_config

    cfg = Config.fromfile(config)
    segmentation = cfg.default_scope == 'mmseg'
    assert cfg.model.backbone.type in mmvit_backbones.__all__
    # the shipped config points at the official weights; the smoke test trains from scratch
    assert cfg.model.backbone.init_cfg is not None and cfg.model.backbone.init_cfg['type'] == 'Pretrained'
    cfg = shrink_config(cfg, ade_shapes if segmentation else coco_shapes, scale=(96, 64))
    if not segmentation:
        _lighten_heads(cfg.model)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))

    # what the backbone returns, and which parameters hold a gradient just before the optimizer step (the wrapper
    # zeroes the gradients right after it)
    maps, neck_maps, missing = [], [], []
    hook = model.backbone.register_forward_hook(lambda module, args, out: maps.append(out))
    neck_hook = model.neck.register_forward_hook(lambda module, args, out: neck_maps.append(out)) \
        if getattr(model, 'neck', None) is not None else None
    step_hook = optim_wrapper.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: missing.extend(_parameters_without_gradient(model)))
    model.train()
    losses = model.train_step(batch, optim_wrapper)
    hook.remove()
    step_hook.remove()
    if neck_hook is not None:
        neck_hook.remove()
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    assert len(maps) == 1, 'the backbone ran more than once in a training step'
    _check_levels(model, maps[0])
    if getattr(model, 'roi_head', None) is not None:
        # mmcv's RoIAlign reads the neck's maps as contiguous NCHW whatever their strides: a channels-last map (what a
        # convolution makes of a channels-last backbone level) would be pooled from scrambled memory
        assert all(m.is_contiguous() for m in neck_maps[0]), [m.stride() for m in neck_maps[0]]
    assert not missing, (f'{len(missing)} trainable parameters get no gradient (DDP with '
                         f'find_unused_parameters=False fails): {missing[:8]}')

    model.eval()
    with torch.no_grad():
        results = model.test_step(next(iter(Runner.build_dataloader(cfg.test_dataloader))))
    assert len(results) == 1
    if segmentation:
        assert results[0].pred_sem_seg.data.shape[-2:] == results[0].gt_sem_seg.data.shape[-2:]
    else:
        assert 'bboxes' in results[0].pred_instances

"""Every config shipped in configs/ builds and runs one training and one inference step (on a tiny input).

Parametrised over the folder, so each new config is covered automatically. The real pipelines, datasets,
optimizer-wrapper constructors and models of the config run; only data, scale and pretrained weights change.
"""
import glob
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')))


def test_configs_exist():
    names = {osp.basename(c) for c in CONFIGS}
    for name in ('retinanet_pyramidtnt_s_1x.py', 'maskrcnn_pyramidtnt_s_1x.py', 'maskrcnn_pyramidtnt_s_3x.py',
                 'cascade_maskrcnn_pyramidtnt_s_3x.py', 'upernet_pyramidtnt_s_160k.py'):
        assert name in names


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.basename(c)[:-3] for c in CONFIGS])
def test_config_trains_and_infers_one_step(config, coco_shapes, ade_shapes):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.cpu_configs import shrink_config

    cfg = Config.fromfile(config)
    segmentation = cfg.default_scope == 'mmseg'
    assert cfg.model.backbone.type in mmvit_backbones.__all__
    # the shipped config points at the official weights; the smoke test trains from scratch
    assert cfg.model.backbone.init_cfg is not None and cfg.model.backbone.init_cfg['type'] == 'Pretrained'
    cfg = shrink_config(cfg, ade_shapes if segmentation else coco_shapes, scale=(96, 64))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    model.train()
    losses = model.train_step(batch, optim_wrapper)
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    model.eval()
    with torch.no_grad():
        results = model.test_step(next(iter(Runner.build_dataloader(cfg.test_dataloader))))
    assert len(results) == 1
    if segmentation:
        assert results[0].pred_sem_seg.data.shape[-2:] == results[0].gt_sem_seg.data.shape[-2:]
    else:
        assert 'bboxes' in results[0].pred_instances

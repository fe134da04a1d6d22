"""End to end on the synthetic COCO-format data, through the real tools: train, test from a checkpoint, resume;
and training visibly learns (a trained detector beats an untrained one on COCO bbox mAP)."""
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_PYRAMIDTNT = dict(depths=[1, 1, 1, 1], outer_dims=[32, 64, 128, 128], inner_dims=[4, 8, 16, 16],
                       outer_heads=[1, 2, 4, 4], inner_heads=[1, 1, 2, 2])


def _tiny_retinanet_config(data_root: str, epochs: int) -> Config:
    from mmvit_backbones.testing.cpu_configs import (
        backbone_out_channels,
        set_neck_channels,
        short_schedule,
        shrink_config,
    )
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_pyramidtnt_s_1x.py'))
    cfg = shrink_config(cfg, data_root, scale=(160, 128), batch_size=4)
    cfg.model.backbone.arch = TINY_PYRAMIDTNT
    set_neck_channels(cfg, backbone_out_channels(cfg.model.backbone))  # the levels the config returns (strides 8-32)
    cfg.model.neck.out_channels = 32
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    cfg = short_schedule(cfg, epochs=epochs, warmup_iters=5, log_interval=1)
    cfg.optim_wrapper.optimizer.lr = 2e-3
    cfg.randomness = dict(seed=0, deterministic=False)
    return cfg


def _run(args, cwd):
    proc = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _evaluated(log: str) -> None:
    # COCO evaluation ran (a barely trained detector may have no box above the score threshold yet)
    assert 'Evaluating bbox' in log, log[-2000:]


def test_train_test_resume_through_tools(coco_shapes, tmp_path):
    cfg = _tiny_retinanet_config(coco_shapes, epochs=2)
    config = str(tmp_path / 'tiny_retinanet.py')
    cfg.dump(config)
    work = str(tmp_path / 'work')
    log = _run(['tools/train.py', config, '--work-dir', work], ROOT)
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    _evaluated(log)
    # the checkpoint mmengine wrote loads with weights_only=True (message hub included)
    checkpoint = torch.load(osp.join(work, 'epoch_2.pth'), weights_only=True)
    assert {'state_dict', 'message_hub', 'optimizer', 'meta'} <= set(checkpoint)

    out = str(tmp_path / 'results.pkl')
    log = _run(['tools/test.py', config, osp.join(work, 'epoch_2.pth'), '--out', out,
                '--work-dir', str(tmp_path / 'test')], ROOT)
    _evaluated(log)
    assert osp.isfile(out)

    log = _run(['tools/train.py', config, '--work-dir', work, '--resume',
                '--cfg-options', 'train_cfg.max_epochs=3', 'train_cfg.val_interval=3'], ROOT)
    assert 'resumed epoch: 2' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_3.pth'))


def test_training_beats_untrained_on_coco_map(coco_shapes, tmp_path):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    cfg = _tiny_retinanet_config(coco_shapes, epochs=40)
    # evaluate on the training images: 8 images cannot teach generalisation, but a detector that learned
    # nothing scores ~0 there while one that learned localises the shapes it saw
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key].dataset.ann_file = 'annotations/instances_train2017.json'
        cfg[key].dataset.data_prefix = dict(img='train2017/')
    cfg.val_evaluator.ann_file = osp.join(coco_shapes, 'annotations', 'instances_train2017.json')
    cfg.train_cfg.val_interval = 100
    cfg.work_dir = str(tmp_path)
    init_default_scope('mmdet')
    runner = Runner.from_cfg(cfg)
    untrained = runner.val_loop.run()['coco/bbox_mAP']
    runner.train()
    trained = runner.val_loop.run()['coco/bbox_mAP']
    print(f"untrained mAP {untrained:.3f}, trained mAP {trained:.3f}")
    assert trained > untrained + 0.15, (untrained, trained)

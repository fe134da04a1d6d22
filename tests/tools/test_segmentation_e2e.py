"""UPerNet trains on the ADE20K-format synthetic data and reports mIoU through mmseg's real metric."""
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_upernet_trains_and_reports_miou(ade_shapes, tmp_path):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.testing.cpu_configs import short_schedule, shrink_config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'upernet_pyramidtnt_s_160k.py'))
    cfg = shrink_config(cfg, ade_shapes, scale=(128, 96), batch_size=2, small_backbone=True)
    cfg.model.decode_head.channels = 32
    cfg.model.auxiliary_head.channels = 16
    cfg = short_schedule(cfg, iters=2, warmup_iters=1, log_interval=1)
    cfg.work_dir = str(tmp_path)
    init_default_scope('mmseg')
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert {'mIoU', 'aAcc', 'mAcc'} <= set(metrics)
    assert 0.0 <= metrics['aAcc'] <= 100.0
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


def test_tools_test_evaluates_a_segmentor_checkpoint(ade_shapes, tmp_path):
    """tools/test.py is generic: the same command evaluates an mmseg checkpoint, writes masks and drawings."""
    import subprocess
    import sys

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.testing.cpu_configs import short_schedule, shrink_config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'upernet_pyramidtnt_s_160k.py'))
    cfg = shrink_config(cfg, ade_shapes, scale=(128, 96), batch_size=2, small_backbone=True)
    cfg = short_schedule(cfg, iters=1, warmup_iters=1, log_interval=1)
    config = str(tmp_path / 'tiny_upernet.py')
    cfg.dump(config)
    work = str(tmp_path / 'work')
    for args in (['tools/train.py', config, '--work-dir', work],
                 ['tools/test.py', config, osp.join(work, 'iter_1.pth'), '--work-dir', work,
                  '--out', str(tmp_path / 'masks'), '--show-dir', str(tmp_path / 'drawn')]):
        proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'mIoU' in proc.stdout + proc.stderr
    assert len(list((tmp_path / 'masks').glob('*.png'))) == 2
    assert list((tmp_path / 'drawn').rglob('*.png'))

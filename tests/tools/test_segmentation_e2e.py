"""UPerNet trains on the ADE20K-format synthetic data and reports mIoU through mmseg's real metric."""
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_upernet_trains_and_reports_miou(ade_shapes, tmp_path):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.cpu_configs import short_schedule, shrink_config
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

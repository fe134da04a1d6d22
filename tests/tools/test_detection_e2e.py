"""End to end on the synthetic COCO-format data, through the real tools: train, test from a checkpoint, resume;
and training visibly learns (a trained detector beats an untrained one on COCO bbox mAP)."""
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tiny_retinanet_config(data_root: str, epochs: int) -> Config:
    from mmvit_backbones.testing.cpu_configs import tiny_retinanet
    return tiny_retinanet(Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_pyramidtnt_s_1x.py')), data_root,
                          epochs)


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


def test_training_beats_untrained_on_coco_map(trained_retinanet):
    print(f'untrained mAP {trained_retinanet.untrained_map:.3f}, trained mAP {trained_retinanet.trained_map:.3f}')
    assert trained_retinanet.trained_map > trained_retinanet.untrained_map + 0.15, trained_retinanet

"""Multi-process (DDP) training through the real launch script on a CPU machine: 2 processes, gloo.

``tools/dist_train.sh`` trains RetinaNet on the synthetic COCO data for 2 iterations per process, rank 0 writes the
checkpoint, ``tools/test.py`` evaluates it, and ``--resume`` continues it under DDP: with a token-pyramid backbone and
with BoTNet (batch norm buffers broadcast across processes). A second test kills a DDP run with SIGKILL after a
checkpoint and resumes it. That every family gives every trainable parameter a gradient (what DDP with
``find_unused_parameters=False`` needs) is checked in-process for all of them in ``tests/models/backbones``.
"""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from mmvit_backbones.testing.cpu_configs import narrow_detector, short_schedule, shrink_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'retinanet_pyramidtnt_s_1x.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env() -> dict:
    # PATH without the venv: the launch scripts must find the project's Python themselves (no activation)
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHON')}
    env['PATH'] = os.pathsep.join(p for p in env.get('PATH', '').split(os.pathsep) if '.venv' not in p)
    env.update(PORT=str(_free_port()), OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    return env


def _kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (here: the run's work dir)."""
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if text.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass  # ended meanwhile, or not ours to read


def _write_config(backbone: str, data_root: str, path: str, epochs: int) -> str:
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.type = backbone
    cfg = shrink_config(cfg, data_root, scale=(96, 80), batch_size=2, small_backbone=True)
    cfg = short_schedule(cfg, epochs=epochs, warmup_iters=2, log_interval=1)
    narrow_detector(cfg.model, 32)
    cfg.randomness = dict(seed=0)
    cfg.dump(path)
    return path


def _run(cmd, **kwargs) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, **kwargs)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


@pytest.mark.parametrize('backbone', ['PyramidTNT', 'BoTNet'])
def test_ddp_train_test_resume(backbone, coco_shapes, tmp_path):
    config = _write_config(backbone, coco_shapes, str(tmp_path / 'cfg.py'), epochs=1)
    work = str(tmp_path / 'work')
    log = _run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work])
    assert 'Distributed launcher: pytorch' in log and re.search(r"'?backend'?: '?gloo", log), log[-3000:]
    assert 'Evaluating bbox' in log, log[-3000:]
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['epoch_1.pth']

    log = _run([sys.executable, 'tools/test.py', config, osp.join(work, 'epoch_1.pth'),
                '--work-dir', str(tmp_path / 'test')])
    assert 'Evaluating bbox' in log, log[-3000:]

    log = _run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work, '--resume',
                '--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2'])
    assert 'resumed epoch: 1' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def test_ddp_killed_after_checkpoint_resumes(coco_shapes, tmp_path):
    epochs = 8
    config = _write_config('PyramidTNT', coco_shapes, str(tmp_path / 'cfg.py'), epochs=epochs)
    work = str(tmp_path / 'work')
    options = ['--cfg-options', 'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
               f'train_cfg.val_interval={epochs}']
    proc = subprocess.Popen(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work] + options, cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = osp.join(work, 'last_checkpoint')  # written by rank 0 after a checkpoint file is complete
    deadline = time.time() + 400
    while not osp.isfile(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    # the launcher and both workers (torchrun starts them in sessions of their own), no chance to clean up
    os.killpg(proc.pid, signal.SIGKILL)
    _kill_processes_mentioning(work)
    proc.wait()
    assert osp.isfile(marker), 'training ended or timed out before writing a checkpoint'
    with open(marker) as f:
        killed_at = int(re.search(r'epoch_(\d+)\.pth', f.read()).group(1))
    assert killed_at < epochs, 'the run finished before it could be killed'

    log = _run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work, '--resume'] + options)
    assert f'resumed epoch: {killed_at}' in log, log[-3000:]
    assert osp.isfile(osp.join(work, f'epoch_{epochs}.pth'))

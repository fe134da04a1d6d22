"""The first command a user runs on a machine without the dataset or the official weights: tools/train.py and
tools/test.py stop before building anything, with one message that names each missing path, the config key to
change and where to get the files, exit status 2 and no traceback."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(tool: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _assert_usage_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith('error: '), proc.stderr[-3000:]
    return proc.stderr


def test_train_without_dataset_and_weights(tmp_path):
    """The README's first command on a fresh machine: neither COCO nor the PyramidTNT weights are there."""
    work_dir = tmp_path / 'work'
    message = _assert_usage_error(_run('train.py', osp.join(ROOT, 'configs', 'retinanet_pyramidtnt_s_1x.py'),
                                       '--work-dir', str(work_dir), cwd=str(tmp_path)))
    # the dataset: the path, the keys to change, the demo
    assert "train_dataloader.dataset.data_root = 'data/coco/': no such folder" in message
    assert "val_evaluator.ann_file = 'data/coco/annotations/instances_val2017.json': no such file" in message
    assert '--cfg-options train_dataloader.dataset.data_root=/path/to/coco/' in message
    assert 'bash tools/demo.sh' in message
    # the backbone's ImageNet weights: the path, where the official files are, how to train without them
    assert "model.backbone.init_cfg.checkpoint = 'checkpoints/pyramidtnt_s.pth.tar': no such file" in message
    assert 'pan.baidu.com' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    assert not work_dir.exists()  # stopped before the runner (which creates the work dir) was built


def test_test_without_dataset_and_checkpoint(tmp_path):
    """tools/test.py on a segmentation config: the test split of ADE20K and the checkpoint to evaluate."""
    message = _assert_usage_error(_run('test.py', osp.join(ROOT, 'configs', 'upernet_vit_s_160k.py'),
                                       'work_dirs/upernet_vit_s_160k/iter_160000.pth',
                                       '--work-dir', str(tmp_path / 'work'), cwd=str(tmp_path)))
    assert "The checkpoint to test 'work_dirs/upernet_vit_s_160k/iter_160000.pth' does not exist" in message
    assert "test_dataloader.dataset.data_root = 'data/ade/ADEChallengeData2016': no such folder" in message
    assert '--cfg-options test_dataloader.dataset.data_root=/path/to/ADEChallengeData2016/' in message
    assert 'bash tools/demo.sh' in message
    assert not (tmp_path / 'work').exists()

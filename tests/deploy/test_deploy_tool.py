"""tools/deploy.py: bad input, the mmdeploy fixes stay opt-in, the shrunk configs' top-level pipelines."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmvit_backbones.testing.cpu_configs import narrow_detector, shrink_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCALE = (128, 96)  # (w, h) of the test pipeline: small, and not the export scale of the second comparison


def _tool():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import deploy
    finally:
        sys.path.pop(0)
    return deploy


def _small_config(config: str, data_root: str, folder) -> str:
    cfg = shrink_config(Config.fromfile(osp.join(ROOT, 'configs', config)), data_root, scale=SCALE,
                        small_backbone=True)
    if cfg.get('default_scope') == 'mmdet':
        narrow_detector(cfg.model, 32)
    path = str(folder / 'model.py')
    cfg.dump(path)
    return path


@pytest.mark.parametrize('args, message', [
    (['configs/no_such_config.py'], 'config configs/no_such_config.py: no such file'),
    (['configs/retinanet_gcvit_t_1x.py', '--img', 'no_such.jpg'], 'image no_such.jpg: no such file'),
    (['configs/retinanet_gcvit_t_1x.py', 'missing.pth'], 'checkpoint missing.pth: no such file'),
])
def test_bad_input_exits_2_with_a_message(args, message, tmp_path):
    proc = subprocess.run([sys.executable, 'tools/deploy.py', *args, '--work-dir', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr


def test_package_import_leaves_mmdeploy_alone():
    code = ('import sys, torch; export = torch.onnx.export; import mmvit_backbones, mmvit_backbones.models; '
            "assert 'mmdeploy' not in sys.modules and 'mmvit_backbones.deploy.mmdeploy_compat' not in sys.modules; "
            'assert torch.onnx.export is export')
    subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True, timeout=300)


def test_shrunk_config_shrinks_the_top_level_test_pipeline(tmp_path):
    """mmdeploy and DetInferencer build inputs from the top-level test_pipeline: it must be the shrunk one."""
    cfg = shrink_config(Config.fromfile(osp.join(ROOT, 'configs', 'maskrcnn_gcvit_t_1x.py')), str(tmp_path),
                        scale=SCALE)
    resizes = [t for t in cfg.test_pipeline if t['type'] == 'Resize']
    assert resizes and all(tuple(t['scale']) == SCALE for t in resizes)
    def steps(pipeline):  # mmengine marks the dataset's copy with its scope
        return [{k: v for k, v in t.items() if k != '_scope_'} for t in pipeline]
    assert steps(cfg.test_pipeline) == steps(cfg.test_dataloader.dataset.pipeline)

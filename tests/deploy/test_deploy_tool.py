"""tools/deploy.py end to end through mmdeploy and ONNX Runtime: one shipped config per task (detection,
instance segmentation, cascade instance segmentation, semantic segmentation), each with another family's small
backbone, a narrow neck/head and small images, random weights; bad input; the mmdeploy fixes stay opt-in."""
import os.path as osp
import subprocess
import sys

import onnx
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


@pytest.mark.parametrize('config, task, outputs', [
    ('retinanet_gcvit_t_1x.py', 'detection', ['dets', 'labels']),
    ('maskrcnn_botnet_50_1x.py', 'instance-seg', ['dets', 'labels', 'masks']),
    ('cascade_maskrcnn_pyramidtnt_s_3x.py', 'instance-seg', ['dets', 'labels', 'masks']),
    ('upernet_t2tvit_14_160k.py', 'segmentation', ['output']),  # slide mode, compared in whole mode
])
def test_deploy_equals_pytorch(config, task, outputs, coco_shapes, ade_shapes, tmp_path, capsys):
    data_root = ade_shapes if config.startswith('upernet') else coco_shapes
    small = _small_config(config, data_root, tmp_path)
    work_dir = tmp_path / 'work'
    status = _tool().main([small, '--work-dir', str(work_dir), '--shape', '80', '112'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert f'{task} model' in printed and 'random weights' in printed, printed
    assert printed.count(': ok, ') == 2, printed  # two input sizes compared, both equal
    graph = onnx.load(str(work_dir / 'end2end.onnx')).graph
    assert [o.name for o in graph.output] == outputs
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ['batch', '', 'height', 'width']
    assert (work_dir / 'pytorch_vs_onnxruntime.png').stat().st_size > 0


def test_deploy_eval_reports_both_metrics(coco_shapes, tmp_path, capsys):
    small = _small_config('retinanet_shunted_s_1x.py', coco_shapes, tmp_path)
    status = _tool().main([small, '--work-dir', str(tmp_path / 'work'), '--eval'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'coco/bbox_mAP ' in printed and 'PyTorch' in printed and 'ONNX Runtime' in printed, printed


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
    assert cfg.test_pipeline == cfg.test_dataloader.dataset.pipeline

"""tools/deploy.py through mmdeploy and ONNX Runtime: a trained detector gives the same detections and COCO mAP in
both runtimes; every family deploys in one of the four tasks (small backbones, small images, random weights); bad
input; the mmdeploy fixes stay opt-in; the shrunk configs' top-level pipelines."""
import os.path as osp
import re
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


def test_trained_detector_gives_the_same_detections_and_map(trained_retinanet, coco_shapes, tmp_path):
    image = osp.join(coco_shapes, 'train2017', '000001.jpg')
    proc = subprocess.run([sys.executable, 'tools/deploy.py', trained_retinanet.config, trained_retinanet.checkpoint,
                           '--work-dir', str(tmp_path), '--img', image, '--eval'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    printed = proc.stdout
    assert proc.returncode == 0, printed[-3000:] + proc.stderr[-3000:]
    matched = [int(n) for n in re.findall(r': ok, (\d+) detections above 0.3 matched', printed)]
    # both sizes compared; the trained scale has detections to compare (the second, smaller one may have none)
    assert len(matched) == 2 and matched[0] >= 1, printed
    metrics = dict(re.findall(r'^coco/(bbox_mAP\S*) +(\S+ +\S+)$', printed, re.M))
    torch_map, ort_map = map(float, metrics['bbox_mAP'].split())
    assert torch_map > 0.15 and abs(torch_map - ort_map) <= 0.005, printed


# every family in a task (PyramidTNT in the trained test above), every task at least once; the RoI-head tasks run
# mmdeploy's rewrites (RoIAlign, the cascade refinement) and UPerNet the adaptive-pooling fix, slide mode compared in
# whole mode
SMALL = (80, 112)  # (h, w) of the test scale; the tool's second size is smaller and not a multiple of 32
FAMILY_TASK = [
    ('retinanet_gcvit_t_1x.py', 'detection', SMALL),
    ('retinanet_mixer_b16_1x.py', 'detection', SMALL),
    ('retinanet_t2tvit_14_1x.py', 'detection', SMALL),
    ('retinanet_deepvit_s_1x.py', 'detection', SMALL),
    ('retinanet_botnet_50_1x.py', 'detection', SMALL),
    ('retinanet_resmlp_24_1x.py', 'detection', SMALL),
    ('maskrcnn_shunted_s_1x.py', 'instance-seg', SMALL),
    ('maskrcnn_resmlp_24_1x.py', 'instance-seg', SMALL),
    ('cascade_maskrcnn_cswin_t_3x.py', 'instance-seg', SMALL),
    ('upernet_shunted_s_160k.py', 'segmentation', SMALL),
    ('upernet_vit_s_160k.py', 'segmentation', SMALL),
    ('upernet_tnt_s_160k.py', 'segmentation', SMALL),
]
OUTPUTS = {'detection': ['dets', 'labels'], 'instance-seg': ['dets', 'labels', 'masks'], 'segmentation': ['output']}


@pytest.mark.parametrize('config, task, shape', FAMILY_TASK,
                         ids=[case[0][:-3] for case in FAMILY_TASK])
def test_every_family_deploys_in_a_task(config, task, shape, coco_shapes, ade_shapes, tmp_path, capsys):
    """Random weights: the graph exports with a dynamic size, runs in ONNX Runtime at two sizes and the tool's
    comparison holds: the class map pixel by pixel, detections (boxes, scores, labels, masks) above 0.3 for
    RetinaNets (random heads score about 0.01) and all of them (above 0.05) for R-CNNs. The second size is padded to
    the size divisor: the graph pads it itself and clips proposals and boxes to the image, as mmdet does."""
    small = _small_config(config, ade_shapes if task == 'segmentation' else coco_shapes, tmp_path)
    work_dir = tmp_path / 'work'
    # R-CNNs: every detection the model returns (its test_cfg.score_thr, 0.05) compared
    rcnn = ['--score-thr', '0.05'] if task == 'instance-seg' else []
    status = _tool().main([small, '--work-dir', str(work_dir), '--shape', str(shape[0]), str(shape[1])] + rcnn)
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert f'{task} model' in printed and 'random weights' in printed, printed
    assert printed.count(': ok, ') == 2, printed  # two input sizes compared, both equal
    if task == 'instance-seg':  # the random R-CNN heads score boxes above 0.05: the comparison has detections
        assert min(int(n) for n in re.findall(r': ok, (\d+) detections', printed)) >= 1, printed
    graph = onnx.load(str(work_dir / 'end2end.onnx'), load_external_data=False).graph
    assert [o.name for o in graph.output] == OUTPUTS[task]
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ['batch', '', 'height', 'width']
    assert (work_dir / 'pytorch_vs_onnxruntime.png').stat().st_size > 0


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

"""tools/demo.py runs end to end (data, training, COCO evaluation, picture), with the backbone or the detector
switched with --cfg-options or --config, exactly as the README shows."""
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SWITCHES = [
    [],  # the default: RetinaNet + PyramidTNT
    ['--config', 'configs/maskrcnn_gcvit_t_1x.py'],  # two-stage: RPN + RoI heads narrowed with the neck, masks drawn
    ['--cfg-options', 'model.backbone.type=CSWin'],  # the README's example of another family
    ['--cfg-options', 'model.backbone.type=BoTNet'],  # a convolutional family (batch norm, no tokens)
]
# every family in every shipped detector is shrunk the demo's way and trained a step in tests/configs


@pytest.mark.parametrize('switch', SWITCHES, ids=lambda s: s[-1].split('=')[-1].split('/')[-1] if s else 'default')
def test_demo_runs(switch, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / 'demo_data'  # written by the first run, reused by the others
    work = tmp_path_factory.mktemp('demo_work')
    proc = subprocess.run(
        [sys.executable, 'tools/demo.py', '--epochs', '1', '--num-train', '8', '--num-val', '2',
         '--data-root', str(data), '--work-dir', str(work)] + switch,
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = re.search(r'Demo finished in .* min: (\w+) \+ (\w+), COCO bbox mAP', proc.stdout)
    assert summary, proc.stdout[-2000:]
    expected = switch[-1].split('=')[-1] if switch and switch[0] == '--cfg-options' else None
    if expected:
        assert summary.group(2) == expected
    assert osp.isfile(osp.join(str(work), 'demo_detections.png'))

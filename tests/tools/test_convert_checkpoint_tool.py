"""tools/convert_checkpoint.py turns an official checkpoint into a plain file that loads with weights_only and
gives the same backbone outputs as converting on load."""
import os.path as osp
import subprocess
import sys

import torch

from mmvit_backbones.parity import official_state_dict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_offline_conversion_matches_conversion_on_load(tmp_path):
    from mmvit_backbones import PyramidTNT
    fixture = torch.load(osp.join(ROOT, 'tests', 'data', 'parity', 'pyramidtnt_ti_192.pt'), weights_only=True)
    official = str(tmp_path / 'ptnt-ti.pth.tar')
    torch.save({'state_dict': official_state_dict(fixture), 'epoch': 300}, official)
    converted = str(tmp_path / 'pyramidtnt_ti.pth')
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', 'PyramidTNT', official, converted,
                           '--arch', 'ti'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = torch.load(converted, weights_only=True)
    assert 'stages.0.relative_pos' in state and not any(k.startswith('head.') for k in state)

    x = torch.randn(1, 3, 96, 128)
    outputs = []
    for source in (official, converted):
        torch.manual_seed(0)  # the detection adapter is not in the checkpoint: same init for both
        model = PyramidTNT(arch='ti', init_cfg=dict(type='Pretrained', checkpoint=source))
        model.init_weights()
        with torch.no_grad():
            outputs.append(model.eval()(x))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_backbone_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', 'ResNet', 'a.pth', 'b.pth'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'invalid choice' in proc.stderr

"""tools/convert_checkpoint.py turns an official checkpoint into a plain file that loads with weights_only and
gives the same backbone outputs as converting on load."""
import os.path as osp
import subprocess
import sys

import torch

from mmvit_backbones.testing.parity import official_state_dict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def convert_official_file(tmp_path, backbone: str, arch: str, fixture: str, official_name: str, wrapper: str):
    """Write a parity fixture's official weights as the official file does (state dict under ``wrapper``, next to
    training metadata), convert it with the tool; returns (official path, converted path, converted state)."""
    fixture = torch.load(osp.join(ROOT, 'tests', 'data', 'parity', fixture), weights_only=True)
    official = str(tmp_path / official_name)
    torch.save({wrapper: official_state_dict(fixture), 'epoch': 300}, official)
    converted = str(tmp_path / f'{backbone}_{arch}.pth')
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', backbone, official, converted,
                           '--arch', arch], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return official, converted, torch.load(converted, weights_only=True)


def assert_same_outputs(build, sources, x: torch.Tensor) -> None:
    """The backbone loaded through init_cfg from each of ``sources`` gives bit-identical outputs."""
    outputs = []
    for source in sources:
        torch.manual_seed(0)  # the detection adapter is not in the checkpoint: same init for both
        model = build(init_cfg=dict(type='Pretrained', checkpoint=source))
        model.init_weights()
        with torch.no_grad():
            outputs.append(model.eval()(x))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_offline_conversion_matches_conversion_on_load(tmp_path):
    from mmvit_backbones import PyramidTNT
    official, converted, state = convert_official_file(tmp_path, 'PyramidTNT', 'ti', 'pyramidtnt_ti_192.pt',
                                                       'ptnt-ti.pth.tar', 'state_dict')
    assert 'stages.0.relative_pos' in state and not any(k.startswith('head.') for k in state)
    assert_same_outputs(lambda **kw: PyramidTNT(arch='ti', **kw), (official, converted), torch.randn(1, 3, 96, 128))


def test_resmlp_official_file_converts_to_the_same_backbone(tmp_path):
    """An official deit ResMLP file ({'model': ...}: deit keys patch_embed/attn/gamma_1, (1, 1, D) affines, head)."""
    from mmvit_backbones import ResMLP
    official, converted, state = convert_official_file(tmp_path, 'ResMLP', '12', 'resmlp_12_224.pt',
                                                       'resmlp_12_no_dist.pth', 'model')
    assert 'blocks.11.linear_tokens.weight' in state and state['norm.alpha'].shape == (384, )
    assert not any(k.startswith(('head.', 'patch_embed.', 'pyramid.')) or '.attn.' in k for k in state)
    # an odd size: the windows, their padding and the pyramid all take part
    assert_same_outputs(lambda **kw: ResMLP(arch='12', **kw), (official, converted), torch.randn(1, 3, 75, 101))


def test_unknown_backbone_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', 'ResNet', 'a.pth', 'b.pth'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'invalid choice' in proc.stderr

"""tools/check_parity.py on copies of the official fixtures: passes, and fails loudly on a wrong reference."""
import glob
import os.path as osp
import shutil
import subprocess
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIXTURES = sorted(glob.glob(osp.join(ROOT, 'tests', 'data', 'parity', '*.pt')))


def _check(paths):
    return subprocess.run([sys.executable, 'tools/check_parity.py', *paths], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def test_all_fixtures_pass():
    proc = _check(FIXTURES)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith('parity:') and ' 0 mismatch' in summary, summary
    for path in FIXTURES:
        fixture = torch.load(path, weights_only=True)
        for name in fixture['outputs']:
            assert any(line.split()[:1] == [name] for line in proc.stdout.splitlines()), name


def test_mismatch_exits_nonzero(tmp_path):
    source = osp.join(ROOT, 'tests', 'data', 'parity', 'pyramidtnt_ti_192.pt')
    fixture = torch.load(source, weights_only=True)
    fixture['outputs']['stage1'] = fixture['outputs']['stage1'] + 0.01
    broken = str(tmp_path / 'broken.pt')
    torch.save(fixture, broken)
    copy = str(tmp_path / 'copy.pt')
    shutil.copy(source, copy)
    proc = _check([copy, broken])
    assert proc.returncode == 1
    assert 'MISMATCH' in proc.stdout and 'broken.pt' in proc.stdout.splitlines()[-1]

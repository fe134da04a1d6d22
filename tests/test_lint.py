"""The repository passes ruff with the project's settings (ruff.toml: 120 columns, pycodestyle, pyflakes, import
order); ruff comes with the tests extra, which the test command installs."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_ruff_check_passes():
    proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', '--output-format', 'concise', '.'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]

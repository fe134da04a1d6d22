"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing anchor, an unresolved
API reference or a docstring mkdocstrings cannot render fails the suite."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _mkdocs():
    pytest.importorskip('mkdocs', reason='the docs extra is not installed: pip install -e .[docs]')
    pytest.importorskip('mkdocstrings_handlers.python')
    return [sys.executable, '-m', 'mkdocs']


def test_docs_build_strict(tmp_path):
    proc = subprocess.run(_mkdocs() + ['build', '--strict', '--site-dir', str(tmp_path / 'site')], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in ('index.html', 'api/index.html', 'families/cswin/index.html', 'benchmarks/index.html'):
        assert (tmp_path / 'site' / page).is_file(), page
    api = (tmp_path / 'site' / 'api' / 'index.html').read_text(encoding='utf-8')
    names = ['models.' + name for name in ('PyramidTNT', 'GCViT', 'ShuntedTransformer', 'T2TViT', 'PlainViT', 'BoTNet',
                                           'CSWin', 'TNT', 'DeepViT', 'MLPMixer', 'ResMLP', 'PyramidBackbone')]
    names += ['checkpoint.load_pretrained', 'engine.LayerwiseDecayOptimWrapperConstructor']
    for name in names:  # rendered from the docstrings, under their public import paths
        assert f'id="mmvit_backbones.{name}"' in api, name


def test_docs_build_fails_on_a_broken_anchor(tmp_path):
    """The validation settings of mkdocs.yml make a link to a missing heading an error under --strict."""
    copy = tmp_path / 'repo'
    shutil.copytree(osp.join(ROOT, 'docs'), copy / 'docs')
    shutil.copy(osp.join(ROOT, 'mkdocs.yml'), copy)
    shutil.copytree(osp.join(ROOT, 'mmvit_backbones'), copy / 'mmvit_backbones',
                    ignore=shutil.ignore_patterns('__pycache__'))
    with open(copy / 'docs' / 'index.md', 'a', encoding='utf-8') as f:
        f.write('\n[a missing heading](benchmarks.md#no-such-heading)\n')
    proc = subprocess.run(_mkdocs() + ['build', '--strict', '--site-dir', str(tmp_path / 'site')], cwd=str(copy),
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
    assert proc.returncode != 0
    assert 'no-such-heading' in proc.stdout + proc.stderr

"""The README's examples work as written: the config snippets build with mmdet/mmseg, and the plain-PyTorch snippet
runs and prints the shapes its comments show."""
import ast
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _python_snippets():
    text = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read()
    return re.findall(r'```python\n(.*?)```', text, re.S)


def _config_snippets():
    return [s for s in _python_snippets() if 'custom_imports' in s]


def test_readme_has_the_examples():
    assert len(_config_snippets()) == 2
    assert len([s for s in _python_snippets() if 'load_pretrained' in s]) == 1


@pytest.mark.parametrize('index', range(2))
def test_readme_config_snippet_builds(index, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    snippet = _config_snippets()[index]
    path = tmp_path / f'snippet{index}.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__name__ in ('GCViT', 'ShuntedTransformer')
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
    assert len(feats) >= 4


def test_readme_plain_pytorch_snippet_runs(tmp_path):
    """Run the snippet as a user would, in a fresh interpreter, with a checkpoint file at the path it names (the
    weights of a freshly built model: the official file is not downloadable here; the load path is the same)."""
    from mmvit_backbones.models import CSWin
    snippet = next(s for s in _python_snippets() if 'load_pretrained' in s)
    checkpoint = re.search(r"load_pretrained\(model, '([^']+)'\)", snippet).group(1)
    os.makedirs(tmp_path / osp.dirname(checkpoint), exist_ok=True)
    torch.save(CSWin(arch='t').state_dict(), tmp_path / checkpoint)
    python_path = os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])  # the package from this checkout
    proc = subprocess.run([sys.executable, '-c', snippet], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=python_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each print(...) is followed by a comment line with what it prints
    expected = [ast.literal_eval(line[2:]) for line in snippet.splitlines() if line.startswith('# ')]
    printed = [ast.literal_eval(line) for line in proc.stdout.splitlines() if line.startswith(('[(', '('))]
    assert printed == expected and len(expected) == 2


def _zoo_rows():
    """The README's model zoo table: ``{type: (arch cell, top-1 cell, weights cell, configs cell)}``."""
    text = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read()
    table = text.split('## Model zoo', 1)[1].split('\n\n', 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[re.search(r'\(`(\w+)`\)', cells[0]).group(1)] = cells[1:]
    return rows


def test_zoo_table_has_every_family_and_its_variants_build():
    from mmvit_backbones import models
    rows = _zoo_rows()
    families = {name for name in models.__all__ if name != 'PyramidBackbone' and hasattr(models, name)}
    families = {name for name in families if isinstance(getattr(models, name), type)
                and issubclass(getattr(models, name), models.PyramidBackbone)}
    assert set(rows) == families
    for name, (arch_cell, top1_cell, _, configs_cell) in rows.items():
        cls = getattr(models, name)
        for arch in re.findall(r'`([\w-]+)`', arch_cell.split(';')[0]):
            cls.resolve_arch(arch)  # raises for a name the class does not know
        assert re.search(r'\d\d\.\d', top1_cell), name


def test_zoo_table_matches_the_official_weights_tables():
    """Every published top-1 of a family's ``official_weights`` is in its README row, and the row points at the host
    (and first path segment) of every released file."""
    from urllib.parse import urlparse

    from mmvit_backbones import models
    rows = _zoo_rows()
    checked = 0
    for name, (_, top1_cell, weights_cell, _) in rows.items():
        tables = getattr(getattr(models, name), 'official_weights', None)
        if not tables:
            continue
        for key, weights in tables.items():
            if weights.top1 is not None:
                assert f'{weights.top1:g}' in top1_cell, (name, key, weights.top1)
            if weights.url and weights.url.startswith('http'):
                url = urlparse(weights.url)
                source = url.netloc + '/' + url.path.strip('/').split('/')[0]
                assert source in weights_cell, (name, key, source)
            checked += 1
    if not checked:
        pytest.skip('no official_weights tables in the model classes yet')

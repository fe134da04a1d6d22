"""The config snippets of the README ("Use a backbone in your own config") build with mmdet/mmseg."""
import os.path as osp
import re

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _snippets():
    text = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read()
    return [s for s in re.findall(r'```python\n(.*?)```', text, re.S) if 'custom_imports' in s]


@pytest.mark.parametrize('index', range(2))
def test_readme_config_snippet_builds(index, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    snippet = _snippets()[index]
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

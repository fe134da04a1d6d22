"""Registration: scoped names work from mmdet and mmseg even without custom_imports; names do not collide."""
import subprocess
import sys

import pytest

import mmvit_backbones

SNIPPET = '''
from mmengine.registry import init_default_scope
from mmdet.registry import MODELS as DET
from mmseg.registry import MODELS as SEG
init_default_scope('mmdet')
print(type(DET.build(dict(type='mmvit_backbones.GCViT', arch='xxt'))).__name__)
init_default_scope('mmseg')
print(type(SEG.build(dict(type='mmvit_backbones.BoTNet', arch='26t'))).__name__)
import sys
print('mmvit_backbones' in sys.modules)
'''


def test_scoped_type_needs_no_custom_imports():
    # a fresh interpreter that never imported the package: mmengine imports mmvit_backbones.registry for the scope
    proc = subprocess.run([sys.executable, '-c', SNIPPET], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['GCViT', 'BoTNet', 'True']


@pytest.mark.parametrize('name', [n for n in mmvit_backbones.__all__ if n not in ('load_pretrained', '__version__',
                                                                                 'PyramidBackbone')])
def test_names_do_not_shadow_mmdet_or_mmseg(name):
    import mmdet.models  # noqa: F401  (register mmdet's and mmseg's own modules)
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET_OPTIM
    from mmseg.registry import MODELS as SEG
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_OPTIM
    for registry in (DET, SEG, DET_OPTIM, SEG_OPTIM):
        assert name not in registry.module_dict, f'{name} is already a {registry.scope} name'

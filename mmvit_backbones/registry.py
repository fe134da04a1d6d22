"""Registries of mmvit_backbones.

Every public class is registered twice:

* in mmengine's **root** registries, so that an unprefixed ``type='PyramidTNT'`` resolves from mmdet and mmseg
  configs alike (their registries are children of the root and fall back to it) once the package is imported,
  e.g. through ``custom_imports = dict(imports=['mmvit_backbones'])``;
* in this package's own child registries (scope ``mmvit_backbones``), so that ``type='mmvit_backbones.PyramidTNT'``
  works even without ``custom_imports``: mmengine imports ``mmvit_backbones.registry`` for a scoped key and then
  the ``locations`` below.

Names are chosen not to collide with mmdet/mmseg/mmpretrain (a child registry's own name silently shadows a root one).
"""
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as ROOT_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=ROOT_MODELS, scope='mmvit_backbones',
                  locations=['mmvit_backbones.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor', parent=ROOT_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='mmvit_backbones', locations=['mmvit_backbones.engine'])


def _register_in_both(own: Registry, root: Registry):
    def decorator(cls):
        own.register_module(module=cls)
        root.register_module(module=cls)
        return cls
    return decorator


register_model = _register_in_both(MODELS, ROOT_MODELS)
register_optim_wrapper_constructor = _register_in_both(OPTIM_WRAPPER_CONSTRUCTORS, ROOT_OPTIM_WRAPPER_CONSTRUCTORS)

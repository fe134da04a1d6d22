# One module per architecture; each registers its backbone (and its parity adapter) on import.
from .base import PyramidBackbone

__all__ = ['PyramidBackbone']

for _module, _name in [('pyramid_tnt', 'PyramidTNT'), ('gcvit', 'GCViT'), ('shunted', 'ShuntedTransformer'),
                       ('t2t_vit', 'T2TViT'), ('plain_vit', 'PlainViT'), ('botnet', 'BoTNet')]:
    try:
        globals()[_name] = getattr(__import__(f'{__name__}.{_module}', fromlist=[_name]), _name)
        __all__.append(_name)
    except ModuleNotFoundError as _err:  # architecture not written yet
        if _err.name != f'{__name__}.{_module}':
            raise

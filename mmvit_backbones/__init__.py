"""mmvit_backbones: vision-transformer backbones for MMDetection 3.x and MMSegmentation 1.x.

Importing the package registers every backbone and the layer-decay optimizer-wrapper constructor in mmengine's
root registries (visible from mmdet and mmseg configs) and allow-lists the types mmengine writes into its
checkpoints for ``torch.load(weights_only=True)``.
"""
from .checkpoint import allow_mmengine_checkpoint_types, load_pretrained
from .engine import LayerwiseDecayOptimWrapperConstructor
from .interop import timm_models as _timm_models  # noqa: F401  (registers mmvit_* models with timm)
from .models import *  # noqa: F401,F403
from .models import __all__ as _model_names
from .version import __version__

allow_mmengine_checkpoint_types()

__all__ = ['load_pretrained', 'LayerwiseDecayOptimWrapperConstructor', '__version__'] + list(_model_names)

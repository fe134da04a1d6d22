"""The backbones outside OpenMMLab: timm models (registered on import), for segmentation_models_pytorch and
Hugging Face transformers through timm, and torchvision detection (:mod:`mmvit_backbones.interop.torchvision`)."""
from .timm_models import FAMILIES, VARIANTS, Family, TimmModel, Variant, official_checkpoint_filter

__all__ = ['FAMILIES', 'VARIANTS', 'Family', 'TimmModel', 'Variant', 'official_checkpoint_filter']

from .compile import enable_dynamic_shape_training
from .layer_decay import LayerwiseDecayOptimWrapperConstructor

__all__ = ['LayerwiseDecayOptimWrapperConstructor', 'enable_dynamic_shape_training']

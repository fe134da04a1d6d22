from .layer_decay import LayerwiseDecayOptimWrapperConstructor

__all__ = ['LayerwiseDecayOptimWrapperConstructor']

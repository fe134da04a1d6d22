from .backbones import (
                        TNT,
                        BoTNet,
                        CSWin,
                        DeepViT,
                        GCViT,
                        MLPMixer,
                        OfficialWeights,
                        PlainViT,
                        PyramidBackbone,
                        PyramidTNT,
                        ResMLP,
                        ShuntedTransformer,
                        T2TViT,
)

__all__ = ['PyramidBackbone', 'OfficialWeights', 'PyramidTNT', 'GCViT', 'ShuntedTransformer', 'T2TViT', 'PlainViT',
           'BoTNet', 'CSWin', 'TNT', 'DeepViT', 'MLPMixer', 'ResMLP']

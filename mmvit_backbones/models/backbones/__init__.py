# One module per architecture; importing it registers the backbone.
from .base import OfficialWeights, PyramidBackbone
from .botnet import BoTNet
from .cswin import CSWin
from .deepvit import DeepViT
from .gcvit import GCViT
from .mlp_mixer import MLPMixer
from .plain_vit import PlainViT
from .pyramid_tnt import PyramidTNT
from .resmlp import ResMLP
from .shunted import ShuntedTransformer
from .t2t_vit import T2TViT
from .tnt import TNT

__all__ = ['PyramidBackbone', 'OfficialWeights', 'PyramidTNT', 'GCViT', 'ShuntedTransformer', 'T2TViT', 'PlainViT',
           'BoTNet', 'CSWin', 'TNT', 'DeepViT', 'MLPMixer', 'ResMLP']

"""Every variant of every family as a timm model: ``timm.create_model('mmvit_cswin_t', features_only=True)``.

Importing :mod:`mmvit_backbones` registers ``mmvit_<family>_<variant>`` for each published checkpoint of a family
(``official_weights``; e.g. ``mmvit_vit_s16``, ``mmvit_cswin_b_384``) and each ``arch_zoo`` variant without one. The
names, input sizes, normalisation, URLs and licences are read from the backbone classes' tables.

A registered model is :class:`TimmModel`: the project's backbone plus the official classifier head.

* ``features_only=True`` wraps it in timm's ``FeatureGetterNet``: the backbone's 4-level pyramid (strides 4/8/16/32)
  at any input size, ``out_indices`` choosing levels and ``feature_info`` giving their channels and strides.
* Without it, the model is the official ImageNet classifier: the head computes what the official code computes
  (final norm, token or average pooling, ``fc``), so the official weights give the official logits.
* ``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)`` loads an official checkpoint as published (through the
  backbone's ``convert_checkpoint``, with the project's checkpoint errors) or a file saved from the model itself.

Nothing here imports mmcv, mmdet or mmseg.
"""
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, get_device_dtype, register_notrace_module
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models import register_model as register_timm_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import adapt_input_conv

from ..checkpoint import CheckpointError, StateDict, extract_state_dict, load_pretrained
from ..models import (
    TNT,
    BoTNet,
    CSWin,
    DeepViT,
    GCViT,
    MLPMixer,
    PlainViT,
    PyramidBackbone,
    PyramidTNT,
    ResMLP,
    ShuntedTransformer,
    T2TViT,
)
from ..models.layers.pyramid import LayerNorm2d

__all__ = ['Family', 'Variant', 'FAMILIES', 'VARIANTS', 'TimmModel', 'official_checkpoint_filter']

# a file link timm can download and read directly (other `url`s of the tables are pages that link the file)
_FILE_URL = re.compile(r'^https?://.+\.(pth|pth\.tar|pt|tar|bin|safetensors|npz)$')


@dataclass(frozen=True)
class Family:
    """How one backbone family becomes a timm classifier.

    Attributes:
        token: the family part of the model names (``mmvit_<token>_<variant>``).
        backbone: the backbone class.
        first_conv: the backbone's first layer on the image (timm adapts it for ``in_chans != 3``).
        class_token: the official head classifies the final-norm class token (ViT family); otherwise it averages
            the last map.
        final_norm: where the official classifier's final ``norm`` goes in the model: ``'backbone.norm3'`` (the
            backbone's level-3 norm, the same LayerNorm at the same place) or ``'norm'`` (a LayerNorm of the model,
            PyramidTNT); empty when the backbone keeps it itself.
        classifier_kwargs: backbone arguments of the classifier (PyramidTNT: its native stride-64 last stage, which
            the official head pools, instead of the detection upsampling).
        classifier_strides: the level strides of the classifier's backbone.
        has_classifier: the published checkpoints carry an ImageNet-1k classifier (DINO's do not).
    """

    token: str
    backbone: Type[PyramidBackbone]
    first_conv: str
    class_token: bool = False
    final_norm: str = ''
    classifier_kwargs: Mapping[str, Any] = field(default_factory=dict)
    classifier_strides: Tuple[int, ...] = (4, 8, 16, 32)
    has_classifier: bool = True

    def classifier_level(self, settings: Mapping[str, Any]) -> int:
        """The backbone level the classifier reads: the last stage of a pyramid; the native token grid (the
        pyramid's identity level) of a single-scale model."""
        if self.backbone in (MLPMixer, ResMLP):
            return int(math.log2(int(settings['patch_size']))) - 2  # patch 8/16/32 -> level 1/2/3
        return 2 if self.class_token else 3


FAMILIES: Tuple[Family, ...] = (
    Family('pyramidtnt', PyramidTNT, 'patch_embed.common_conv.0', final_norm='norm',
           classifier_kwargs=dict(native_strides=True), classifier_strides=(8, 16, 32, 64)),
    Family('gcvit', GCViT, 'patch_embed.proj', final_norm='backbone.norm3'),
    Family('shunted', ShuntedTransformer, 'stem.convs.0.conv'),
    Family('t2t_vit', T2TViT, 't2t.attn1.kqv', class_token=True),
    Family('vit', PlainViT, 'patch_embed.proj', class_token=True, has_classifier=False),
    Family('botnet', BoTNet, 'stem.conv1.conv'),
    Family('cswin', CSWin, 'stem.conv', final_norm='backbone.norm3'),
    Family('tnt', TNT, 'patch_embed.proj', class_token=True),
    Family('deepvit', DeepViT, 'patch_embed.proj', class_token=True),
    Family('mixer', MLPMixer, 'stem.proj'),
    Family('resmlp', ResMLP, 'stem.proj'),
)
_FAMILY_BY_TOKEN = {family.token: family for family in FAMILIES}


@dataclass(frozen=True)
class Variant:
    """One registered model: a family, an ``arch_zoo`` variant, extra constructor arguments, its official weights."""

    name: str
    family: Family
    arch: str
    kwargs: Mapping[str, Any]
    weights: Optional[Any]  # OfficialWeights, when the family's table lists a checkpoint for this name

    def settings(self) -> Dict[str, Any]:
        return self.family.backbone.resolve_arch(self.arch)

    def pretrained_cfg(self) -> Dict[str, Any]:
        w, family = self.weights, self.family
        size = int(getattr(w, 'input_size', 0) or self.settings().get('pretrain_img_size', 224))
        url = getattr(w, 'url', '') or ''
        stride = family.classifier_strides[family.classifier_level({**self.settings(), **self.kwargs})]
        cfg = dict(
            url=url if _FILE_URL.match(url) else '', origin_url=url or None, license=getattr(w, 'license', None),
            num_classes=1000 if family.has_classifier else 0, input_size=(3, size, size),
            pool_size=(math.ceil(size / stride), ) * 2, interpolation='bicubic',
            mean=tuple(getattr(w, 'mean', IMAGENET_DEFAULT_MEAN)), std=tuple(getattr(w, 'std', IMAGENET_DEFAULT_STD)),
            first_conv=f'backbone.{family.first_conv}', classifier='head.fc',
            notes=(w.note, ) if getattr(w, 'note', '') else None)
        if url.endswith('.npz'):  # official Flax files: timm's reader cannot open them, TimmModel.load_pretrained can
            cfg['custom_load'] = True
        return cfg


def _name_part(name: str) -> str:
    return re.sub(r'[^0-9a-z_]', '_', str(name).lower())


def _canonical_archs(cls: Type[PyramidBackbone]) -> List[str]:
    """The ``arch_zoo`` keys, one per variant (tables where aliases share one settings dict: the first name)."""
    seen, names = set(), []
    for name, settings in cls.arch_zoo.items():
        if id(settings) not in seen:
            seen.add(id(settings))
            names.append(name)
    return names


def _variants(family: Family) -> List[Variant]:
    weights = dict(getattr(family.backbone, 'official_weights', {}) or {})
    variants = [Variant(f'mmvit_{family.token}_{_name_part(key)}', family, w.arch, dict(w.kwargs), w)
                for key, w in weights.items()]
    archs_with_weights = {w.arch for w in weights.values()}
    variants += [Variant(f'mmvit_{family.token}_{_name_part(arch)}', family, arch, {}, None)
                 for arch in _canonical_archs(family.backbone) if arch not in archs_with_weights]
    return variants


# -------------------------------------------------------------------------------------------------------- the model
class TokenClassifierHead(nn.Module):
    """The ViT-family head: the class token (``'token'``) or the mean of the patch tokens (``'avg'``), dropout,
    ``fc``. Input: the final-norm tokens (B, 1 + N, D), class token first; ``pool_type=''`` returns them."""

    def __init__(self, in_features: int, num_classes: int, pool_type: str = 'token', drop_rate: float = 0.,
                 device=None, dtype=None):
        super().__init__()
        self.in_features = self.num_features = in_features
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes, pool_type, device=device, dtype=dtype)

    def reset(self, num_classes: int, pool_type: Optional[str] = None, device=None, dtype=None) -> None:
        if pool_type is not None:
            if pool_type not in ('token', 'avg', ''):
                raise ValueError(f'global_pool must be "token", "avg" or "" for a class-token model, got {pool_type!r}')
            self.pool_type = pool_type
        self.fc = nn.Linear(self.in_features, num_classes, device=device, dtype=dtype) if num_classes else nn.Identity()
        self.fc.train(self.training)  # a new head keeps the model's mode

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.pool_type == 'token':
            x = x[:, 0]
        elif self.pool_type == 'avg':
            x = x[:, 1:].mean(dim=1)
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


_CLASS_TOKEN_BACKBONES: Dict[type, type] = {}


def _with_class_token(cls: Type[PyramidBackbone]) -> type:
    """The backbone class whose forward also returns its final-norm tokens (class token included) after the maps.

    The backbone computes them (its ``norm`` runs on all tokens) but returns only the patch-token pyramid; the
    classifier of the ViT families needs the class token. The subclass keeps the parameters, names, converter and
    load hooks; it is a leaf module for torch.fx, like the backbones.
    """
    if cls not in _CLASS_TOKEN_BACKBONES:
        def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
            captured: List[torch.Tensor] = []
            handle = self.norm.register_forward_hook(lambda _module, _args, out: captured.append(out))
            try:
                maps = cls.forward(self, x)
            finally:
                handle.remove()
            if not captured:  # a batch of 0 images skips the layers
                captured.append(x.new_zeros(x.shape[0], 1, self.embed_dims))
            return (*maps, captured[0])

        subclass = type(f'{cls.__name__}WithClassToken', (cls, ), {'forward': forward, '__module__': __name__})
        register_notrace_module(subclass)
        _CLASS_TOKEN_BACKBONES[cls] = subclass
    return _CLASS_TOKEN_BACKBONES[cls]


class TimmModel(nn.Module):
    """A backbone of this package with timm's model interface (classifier, features, pretrained loading).

    Args:
        family: the family token (``'cswin'``).
        arch: the backbone's ``arch_zoo`` variant.
        levels: the backbone levels built (features: the requested ``out_indices``; classifier: the one it reads).
        classifier: the official classifier (else a feature extractor: no final norm, no head).
        in_chans, num_classes, global_pool, drop_rate, device, dtype: timm's model arguments.
        **backbone_kwargs: further backbone arguments (``drop_path_rate``, ``patch_size``, ...); unknown ones raise
            ``TypeError``.
    """

    def __init__(self, family: str, arch: str, levels: Sequence[int] = (0, 1, 2, 3), classifier: bool = True,
                 in_chans: int = 3, num_classes: int = 1000, global_pool: Optional[str] = None,
                 drop_rate: float = 0., device=None, dtype=None, **backbone_kwargs):
        super().__init__()
        self.family = _FAMILY_BY_TOKEN[family]
        backbone_cls = self.family.backbone
        if classifier:
            backbone_kwargs = {**self.family.classifier_kwargs, **backbone_kwargs}
            if self.family.class_token:
                backbone_cls = _with_class_token(backbone_cls)
        self.is_classifier = classifier
        self.backbone = backbone_cls(arch=arch, in_channels=in_chans, out_indices=tuple(levels), **backbone_kwargs)
        if device is not None or dtype is not None:
            self.backbone.to(device=device, dtype=dtype)
        channels = tuple(self.backbone.out_channels)
        strides = tuple(self.backbone.level_strides)
        self.feature_info = [dict(num_chs=c, reduction=r, module=f'level{i}')
                             for i, (c, r) in enumerate(zip(channels, strides))]
        self.in_chans, self.num_classes, self.drop_rate = in_chans, num_classes, drop_rate
        self.feature_level = max(self.backbone.out_indices)
        width = self.backbone.embed_dims if self.family.class_token else channels[self.feature_level]
        self.num_features = self.head_hidden_size = width
        # the official classifier's final norm where the backbone has none at that place (PyramidTNT)
        self.norm = (LayerNorm2d(width, device=device, dtype=dtype) if classifier and self.family.final_norm == 'norm'
                     else nn.Identity())
        if self.family.class_token:
            self.head = TokenClassifierHead(width, num_classes, global_pool if global_pool is not None else 'token',
                                            drop_rate, device=device, dtype=dtype)
        else:
            self.head = ClassifierHead(width, num_classes, global_pool if global_pool is not None else 'avg',
                                       drop_rate, device=device, dtype=dtype)

    # --------------------------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the final-norm tokens (B, 1 + N, D) of a class-token model, else the last map
        (B, C, H/32, W/32) after the final norm."""
        outs = self.backbone(x)
        if self.family.class_token and self.is_classifier:
            return outs[-1]
        return self.norm(outs[list(self.backbone.out_indices).index(self.feature_level)])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False) -> Union[List[torch.Tensor], Tuple[torch.Tensor,
                                                                                                     List[torch.Tensor]]]:
        """The pyramid levels ``indices`` (timm's rule: None all, n the last n, negatives from the end), NCHW.

        The levels must have been built (the ``out_indices`` of ``features_only``); ``norm`` and ``stop_early``
        change nothing (the levels are the backbone's outputs; it runs up to the deepest requested one).
        """
        if output_fmt != 'NCHW':
            raise ValueError(f'output_fmt must be "NCHW" (the backbones return NCHW maps), got {output_fmt!r}')
        take, _ = feature_take_indices(len(self.feature_info), indices)
        built = list(self.backbone.out_indices)
        missing = [i for i in take if i not in built]
        if missing:
            raise ValueError(f'levels {missing} were not built (built: {built}); create the model with '
                             f'features_only=True, out_indices={tuple(take)}')
        outs = self.backbone(x)
        intermediates = [outs[built.index(i)] for i in take]
        if intermediates_only:
            return intermediates
        return outs[built.index(self.feature_level)], intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Keep the levels ``indices`` (the backbone then stops after the deepest one); returns them as absolute
        indices. The head goes (a feature extractor has none)."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        built = list(self.backbone.out_indices)
        if any(i not in built for i in take):
            raise ValueError(f'cannot keep levels {take}: the model has {built}')
        self.backbone.out_indices = tuple(take)
        self.feature_level = max(take)
        if prune_head:
            self.reset_classifier(0, '')
        return list(take)

    # ---------------------------------------------------------------------------------------- timm model interface
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, device=None, dtype=None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, **get_device_dtype(self, device, dtype))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.with_cp = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for timm's layer-wise lr decay: the stem, each block (the backbone's ``layer_depth``),
        the rest."""
        by_depth: Dict[int, List[str]] = {}
        for name, _ in self.named_parameters():
            inner = name[len('backbone.'):] if name.startswith('backbone.') else None
            depth = self.backbone.layer_depth(inner) if inner is not None else self.backbone.num_layers + 1
            by_depth.setdefault(depth, []).append(re.escape(name))
        # timm's form: (regex, ordinal) per group; one alternation of the parameter names per depth
        patterns = [(f'^(?:{"|".join(names)})$', (depth, )) for depth, names in sorted(by_depth.items())]
        return dict(stem=patterns[0][0], blocks=patterns[1:])

    def load_pretrained(self, checkpoint_path: str, prefix: str = '') -> None:
        """Load a checkpoint file timm cannot read itself (the official Flax ``.npz`` of MLP-Mixer; timm calls this
        for ``pretrained_cfg_overlay=dict(file=PATH, custom_load=True)``)."""
        from ..checkpoint import read_checkpoint
        state = read_checkpoint(checkpoint_path, getattr(self.backbone, 'weights_hint', ''))
        state = official_checkpoint_filter(extract_state_dict(state, prefix or None), self)
        if self.num_classes != self.pretrained_cfg.get('num_classes', self.num_classes):
            state = {k: v for k, v in state.items() if not k.startswith('head.fc.')}
        self.load_state_dict(state, strict=False)


# ------------------------------------------------------------------------------------------------------ checkpoints
def _head_weights(state: StateDict, family: Family) -> Tuple[StateDict, StateDict]:
    """Split an official checkpoint into (the classifier's tensors under the model's names, the backbone's)."""
    head, rest = {}, {}
    for key, value in state.items():
        if key == 'head/kernel':  # official Flax (MLP-Mixer): Dense kernel (in, out)
            head['head.fc.weight'] = value.t()
        elif key == 'head/bias':
            head['head.fc.bias'] = value
        elif key.startswith('head.') and key.count('.') == 1:  # head.weight of the official PyTorch repositories
            head['head.fc.' + key.split('.', 1)[1]] = value
        elif key.startswith('head.fc.'):  # timm's layout (BoTNet)
            head[key] = value
        elif family.final_norm and key.startswith('norm.'):
            head[family.final_norm + key[len('norm'):]] = value
        else:
            rest[key] = value
    return head, rest


def _is_own_layout(state: Mapping[str, Any], model: nn.Module) -> bool:
    own = model.state_dict()
    return sum(k in own for k in state) >= 0.5 * len(state) and any(k.startswith('backbone.') for k in state)


def official_checkpoint_filter(state_dict: Mapping[str, Any], model: TimmModel) -> StateDict:
    """timm's ``pretrained_filter_fn``: an official checkpoint (or one saved from the model) -> the model's state.

    The backbone part goes through the project's loader (:func:`mmvit_backbones.checkpoint.load_pretrained`: the
    family's ``convert_checkpoint``, resizing of resolution-dependent tensors, a clear ``CheckpointError`` for a
    checkpoint of another model); the classifier's ``norm``/``head`` go to the model's head. Parts no ImageNet
    checkpoint has (pyramid adapters, level norms) keep their initialisation.
    """
    if _is_own_layout(state_dict, model):
        return dict(state_dict)
    state = extract_state_dict(dict(state_dict))
    head, rest = _head_weights(state, model.family)
    backbone = model.backbone
    converted = backbone.convert_checkpoint(rest)
    first = model.family.first_conv + '.weight'
    if first in converted and converted[first].ndim == 4 and converted[first].shape[1] != model.in_chans:
        converted[first] = adapt_input_conv(model.in_chans, converted[first])
    load_pretrained(backbone, converted)
    own = model.state_dict()
    unknown = sorted(set(head) - set(own))
    if model.is_classifier and unknown:
        raise CheckpointError(f'the classifier tensors {unknown} of the checkpoint do not fit {type(backbone).__name__}'
                              f' as built (its head keys are {sorted(k for k in own if k.startswith("head."))})')
    mismatched = sorted(k for k, v in head.items() if k in own and v.shape != own[k].shape)
    if mismatched:  # e.g. the ImageNet-21k classifier of a 21k checkpoint in a 1000-class model
        shapes = [tuple(head[k].shape) for k in mismatched], [tuple(own[k].shape) for k in mismatched]
        print_log(f'{type(backbone).__name__}: the checkpoint\'s classifier {mismatched} has shapes {shapes[0]}, the '
                  f'model\'s {shapes[1]}; the head keeps its initialisation', logger='current', level=logging.WARNING)
    own.update({k: v for k, v in head.items() if k in own and k not in mismatched})
    return own


# ----------------------------------------------------------------------------------------------------- registration
def _factory(variant: Variant) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, **kwargs) -> nn.Module:
        # `arch` (a name or a dict) and backbone arguments given by the caller replace the variant's
        kwargs = {'arch': variant.arch, **variant.kwargs, **kwargs}
        features_only = bool(kwargs.get('features_only', False))
        if features_only:
            kwargs.setdefault('out_indices', (0, 1, 2, 3))
            levels, _ = feature_take_indices(4, kwargs['out_indices'])
            kwargs['out_indices'] = tuple(levels)
        else:
            settings = variant.family.backbone.resolve_arch(kwargs['arch'])
            levels = [variant.family.classifier_level({**settings, **kwargs})]
        return build_model_with_cfg(
            TimmModel, variant.name, pretrained, family=variant.family.token, levels=tuple(levels),
            classifier=not features_only, pretrained_filter_fn=official_checkpoint_filter,
            feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)), **kwargs)

    create.__name__ = create.__qualname__ = variant.name
    create.__module__ = __name__
    create.__doc__ = (f'{variant.family.backbone.__name__} {variant.arch!r}' +
                      (f' with {dict(variant.kwargs)}' if variant.kwargs else '') + ' (mmvit_backbones).')
    return create


VARIANTS: Tuple[Variant, ...] = tuple(v for family in FAMILIES for v in _variants(family))
# timm's register_model reads the module's `default_cfgs` by the function's name
default_cfgs = generate_default_cfgs({v.name: v.pretrained_cfg() for v in VARIANTS})
for _variant in VARIANTS:
    globals()[_variant.name] = register_timm_model(_factory(_variant))
for _family in FAMILIES:  # torch.fx (timm's feature extraction, torchvision's): a backbone is one leaf call
    register_notrace_module(_family.backbone)

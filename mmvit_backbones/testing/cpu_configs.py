"""Turn a full-size config into one that runs on a CPU in seconds to minutes, on the synthetic datasets.

Used by the demo (``tools/demo.py``) and the tests: everything the user-facing config says stays (model type,
detector/segmentor, pipelines, evaluator, optimizer, schedule shape) except what cannot run on a CPU in minutes —
the data (root, classes), the image scale, the model size and the schedule length.
"""
import copy
from typing import Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict

from .synthetic_data import SHAPE_CLASSES, coco_metainfo

# The smallest official variant of each backbone (or a reduced one), used by the demo ("model size").
SMALL_BACKBONES = {
    # PyramidTNT-Ti halved in width and depth (3.9M parameters with the detection adapter)
    'PyramidTNT': dict(arch=dict(depths=(2, 2, 2, 2), outer_dims=(48, 96, 192, 192), inner_dims=(3, 6, 12, 12),
                                 outer_heads=(2, 4, 8, 8), inner_heads=(1, 2, 4, 4)), pretrain_img_size=192),
    'GCViT': dict(arch='xxt'),
    'ShuntedTransformer': dict(arch='t'),
    'T2TViT': dict(arch='7'),
    'PlainViT': dict(arch='ti'),
    'BoTNet': dict(arch='26t'),
    # Mixer-S/16 and ResMLP-S12 at half width
    'MLPMixer': dict(arch=dict(embed_dims=256, depth=8, tokens_mlp_dims=128, channels_mlp_dims=1024, patch_size=16)),
    'ResMLP': dict(arch=dict(embed_dims=192, depth=12, patch_size=16, init_scale=0.1)),
    'TNT': dict(arch=dict(embed_dims=192, inner_dims=12, depth=6, num_heads=3, inner_heads=2)),  # TNT-S halved
    # CSWin-T at half width and depth (1/1/4/1 blocks), official stripe widths 1/2/7/7
    'CSWin': dict(arch=dict(embed_dims=32, depths=(1, 1, 4, 1), num_heads=(2, 2, 4, 8))),
    # DeepViT-S at half width and depth (CNN stem, last 4 of 8 blocks re-attend), 8x8 windows in blocks 0/2/4/6
    'DeepViT': dict(arch=dict(embed_dims=192, depth=8, num_heads=6, num_reattention_blocks=4, cnn_stem=True,
                              transform_scale=True, scale_adjustment=0.5), pretrain_img_size=128),
}


def _walk(node, fn):
    """Apply ``fn`` to every dict in a nested config structure (dicts and lists)."""
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, fn)


def _scale_transforms(pipeline, scale: Tuple[int, int]) -> None:
    """Shrink every resize/crop of a pipeline to about ``scale`` (w, h), keeping the transforms themselves."""
    w, h = scale

    def shrink(t):
        kind = t.get('type', '')
        if 'scale' in t and isinstance(t['scale'], (tuple, list)):
            if t['scale'] and isinstance(t['scale'][0], (tuple, list)):  # RandomResize range (mmdet ms-3x recipes)
                t['scale'] = [(w, int(h * 0.8)), (w, h)]
            else:
                t['scale'] = (w, h)
        if 'scales' in t and kind.endswith('Resize'):
            t['scales'] = [(w, int(h * f)) for f in (0.8, 0.9, 1.0)]
        if 'crop_size' in t and isinstance(t['crop_size'], (tuple, list)):
            t['crop_size'] = (int(h * 0.75), int(w * 0.75))
        if 'ratio_range' in t and kind in ('RandomResize', ):
            t['ratio_range'] = (0.75, 1.25)

    _walk(pipeline, shrink)


def _sync_bn_to_bn(cfg) -> None:
    def fix(d):
        if d.get('type') == 'SyncBN':
            d['type'] = 'BN'
    _walk(cfg._cfg_dict if isinstance(cfg, Config) else cfg, fix)


def _set_num_classes(model: dict, num_classes: int) -> None:
    def fix(d):
        if 'num_classes' in d and d.get('type') != 'RPNHead':
            d['num_classes'] = num_classes
    _walk(model, fix)


def shrink_config(cfg: Config, data_root: str, scale: Tuple[int, int] = (160, 128), batch_size: int = 2,
                  small_backbone: bool = False, num_workers: int = 0) -> Config:
    """CPU-sized copy of ``cfg`` reading the synthetic dataset at ``data_root``.

    Detection configs read the COCO-format shapes (3 classes), segmentation configs the ADE20K-format ones.
    ``small_backbone`` swaps the backbone for its smallest variant (:data:`SMALL_BACKBONES`) and derives the
    neck/head input widths from it; pretrained weights are never loaded (``init_cfg=None``).
    """
    cfg = copy.deepcopy(cfg)
    segmentation = cfg.get('default_scope') == 'mmseg'
    data_root = data_root.rstrip('/') + '/'
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        loader.batch_size = batch_size if name == 'train_dataloader' else 1
        loader.num_workers = num_workers
        loader.persistent_workers = False
        dataset = loader.dataset
        while 'dataset' in dataset:  # RepeatDataset / ConcatDataset wrappers
            dataset = dataset.dataset
        dataset.data_root = data_root
        if not segmentation:
            dataset.metainfo = coco_metainfo()
        _scale_transforms(dataset.pipeline, scale)
    # the top-level pipelines too: tools that build inputs from the config (mmdeploy's create_input, mmdet's
    # inference_detector through cfg.test_dataloader, DetInferencer) read `test_pipeline`, not the dataloader's copy
    for name in ('train_pipeline', 'test_pipeline'):
        if cfg.get(name) is not None:
            _scale_transforms(cfg[name], scale)
    for name in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(name)
        if evaluator is not None and not segmentation and 'ann_file' in evaluator:
            evaluator.ann_file = data_root + 'annotations/instances_val2017.json'
    if segmentation and cfg.model.get('data_preprocessor', {}).get('size') is not None:
        cfg.model.data_preprocessor.size = (int(scale[1] * 0.75), int(scale[0] * 0.75))
    if segmentation and 'test_cfg' in cfg.model and cfg.model.test_cfg.get('mode') == 'slide':
        # keep the sliding window, sized as the training crops, with the config's overlap (iBOT: 512 / 341)
        crop = (int(scale[1] * 0.75), int(scale[0] * 0.75))
        overlap = [s / c for s, c in zip(cfg.model.test_cfg.stride, cfg.model.test_cfg.crop_size)]
        cfg.model.test_cfg.crop_size = crop
        cfg.model.test_cfg.stride = tuple(max(1, int(c * f)) for c, f in zip(crop, overlap))
    if not segmentation:
        _set_num_classes(cfg.model, len(SHAPE_CLASSES))
    backbone = cfg.model.backbone
    backbone.init_cfg = None
    if small_backbone:
        for key in ('arch', 'depths', 'embed_dims', 'num_heads'):
            backbone.pop(key, None)
        backbone.update(SMALL_BACKBONES[backbone.type])
        set_neck_channels(cfg, backbone_out_channels(backbone))
    _sync_bn_to_bn(cfg)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    return cfg


def backbone_out_channels(backbone_cfg: dict) -> Sequence[int]:
    """Channels of the levels a backbone config returns (builds the backbone once)."""
    from mmengine.registry import MODELS

    import mmvit_backbones  # noqa: F401
    model = MODELS.build(copy.deepcopy(dict(backbone_cfg)))
    return [model.out_channels[i] for i in model.out_indices]


def set_neck_channels(cfg: Config, channels: Sequence[int]) -> None:
    model = cfg.model
    if model.get('neck') is not None:
        neck = model.neck[0] if isinstance(model.neck, list) else model.neck
        neck.in_channels = list(channels)
    if cfg.get('default_scope') == 'mmseg':
        model.decode_head.in_channels = list(channels)
        aux = model.get('auxiliary_head')
        if aux is not None:
            aux_heads = aux if isinstance(aux, list) else [aux]
            for head in aux_heads:
                head.in_channels = channels[head.get('in_index', -1)]


def short_schedule(cfg: Config, epochs: Optional[int] = None, iters: Optional[int] = None,
                   warmup_iters: int = 20, log_interval: int = 10) -> Config:
    """Replace the schedule by ``epochs`` (detection) or ``iters`` (segmentation), same optimizer, step decay at
    the last fifth, validation and a checkpoint at the end."""
    cfg = copy.deepcopy(cfg)
    by_epoch = iters is None
    length = epochs if by_epoch else iters
    if by_epoch:
        cfg.train_cfg = ConfigDict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    else:
        cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
        dict(type='MultiStepLR', by_epoch=by_epoch, begin=0, end=length, milestones=[max(1, length * 4 // 5)],
             gamma=0.1),
    ]
    hooks = cfg.default_hooks
    hooks.logger = ConfigDict(type='LoggerHook', interval=log_interval, log_metric_by_epoch=by_epoch)
    hooks.checkpoint = ConfigDict(type='CheckpointHook', by_epoch=by_epoch, interval=length, max_keep_ckpts=2)
    return cfg


def narrow_detector(model: dict, width: int) -> None:
    """Make the neck and every head ``width`` channels wide (one-stage, two-stage and cascade detectors alike).

    The neck's output width is what RPN heads, RoI extractors and box/mask heads consume, so every
    ``in_channels``/``feat_channels``/``out_channels`` equal to it after the neck is set to ``width``; the neck's input
    widths (the backbone's levels) stay, and so do the heads' inner widths (convs, fcs) that differ from it.
    """
    neck = model.neck[-1] if isinstance(model.neck, list) else model.neck
    neck_width = neck.out_channels
    neck.out_channels = width

    def narrow(node) -> None:
        if isinstance(node, dict):
            for key in ('in_channels', 'feat_channels', 'out_channels'):
                if node.get(key) == neck_width:
                    node[key] = width
            if node.get('stacked_convs', 0) > 2:  # RetinaNet/FCOS-style towers: 2 convs suffice on the shapes
                node['stacked_convs'] = 2
            for value in node.values():
                narrow(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                narrow(value)

    for name, part in model.items():
        if name not in ('backbone', 'neck', 'data_preprocessor'):
            narrow(part)


# PyramidTNT with one block per stage and narrow widths: a RetinaNet around it learns the synthetic shapes on a CPU
TINY_PYRAMIDTNT = dict(depths=[1, 1, 1, 1], outer_dims=[32, 64, 128, 128], inner_dims=[4, 8, 16, 16],
                       outer_heads=[1, 2, 4, 4], inner_heads=[1, 1, 2, 2])


def tiny_retinanet(cfg: Config, data_root: str, epochs: int) -> Config:
    """``configs/retinanet_pyramidtnt_s_1x.py`` (as ``cfg``) with the tiny PyramidTNT, a 32-channel neck and head,
    ``epochs`` of training with checkpoint and validation at the end, seed 0: the end-to-end tests' detector."""
    cfg = shrink_config(cfg, data_root, scale=(160, 128), batch_size=4)
    cfg.model.backbone.arch = copy.deepcopy(TINY_PYRAMIDTNT)
    set_neck_channels(cfg, backbone_out_channels(cfg.model.backbone))  # the levels the config returns
    cfg.model.neck.out_channels = 32
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    cfg = short_schedule(cfg, epochs=epochs, warmup_iters=5, log_interval=1)
    cfg.optim_wrapper.optimizer.lr = 2e-3
    cfg.randomness = dict(seed=0, deterministic=False)
    return cfg

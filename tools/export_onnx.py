#!/usr/bin/env python
"""Export a backbone or a whole detector/segmentor to ONNX and check the file in onnxruntime.

    python tools/export_onnx.py CONFIG [CHECKPOINT] --out FILE.onnx [--shape H W] [--dynamic] [--backbone-only]
                                [--opset N] [--cfg-options ...] [--check-sizes H W [H W ...]] [--latency]

CONFIG is a shipped (or any mmdet/mmseg) config, or a backbone type such as ``GCViT`` whose arguments come from
``--cfg-options`` (``arch=t window_size=24``). What is exported:

* ``--backbone-only``: the backbone; outputs ``level{i}``, the NCHW maps at strides 4/8/16/32.
* otherwise the whole model in mmengine's tensor mode: for a single-stage detector the raw head outputs (per FPN
  level: class scores and box regressions, before box decoding and NMS, which deployment tools such as mmdeploy
  add), for a segmentor the decode head's logits (stride 4, before the resize to the image size and the argmax).
  Two-stage detectors (Mask/Cascade R-CNN) need proposals (NMS) inside their forward: export their backbone.

The input is the preprocessed batch (``input``: N x 3 x H x W, normalised with the config's data_preprocessor
mean/std, which the tool prints). ``--dynamic`` makes batch, height and width dynamic. The exported file is then run
in onnxruntime at the export shape and at two others (one non-square and not a multiple of 32, one with another
batch size) and every output is compared with PyTorch: max |diff| per output, and a mismatch (more than
``--rtol`` x max |output|) fails the run (exit status 1). Without CHECKPOINT the weights are random (``init_cfg``
checkpoints are not loaded): the file is then right in structure only.
"""
import argparse
import os
import os.path as osp
import sys

import _bootstrap  # noqa: F401
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm

import mmvit_backbones  # noqa: F401
from mmvit_backbones.export import (
    ExportError,
    OpsetError,
    TensorMode,
    check_sizes,
    compare_with_onnxruntime,
    export_onnx,
    measure_latency,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, or a backbone type (e.g. GCViT) configured by --cfg-options')
    parser.add_argument('checkpoint', nargs='?', help='trained model checkpoint (or, with --backbone-only, an '
                        'official ImageNet backbone checkpoint); without it the weights are random')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 768), metavar=('H', 'W'),
                        help='input height and width to export at (default 512 768)')
    parser.add_argument('--batch', type=int, default=1, help='batch size to export at (default 1)')
    parser.add_argument('--dynamic', action='store_true', help='dynamic batch, height and width')
    parser.add_argument('--backbone-only', action='store_true', help='export the backbone of the config only')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset (default 17); one the graph cannot have is an error naming the lowest that '
                        'works')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings (model.backbone.arch=t), or the backbone arguments when '
                        'CONFIG is a backbone type')
    parser.add_argument('--check-sizes', type=int, nargs='+', metavar='H W',
                        help='input sizes to compare onnxruntime with PyTorch at (default: the export size and two '
                        'others; with --dynamic only)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='allowed max |onnxruntime - torch| relative to max |torch| per output (default 1e-4)')
    parser.add_argument('--no-check', action='store_true', help='export only, no onnxruntime comparison')
    parser.add_argument('--latency', action='store_true',
                        help='also time PyTorch and onnxruntime at the export shape (median of --repeats runs)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs of each (default 3)')
    parser.add_argument('--threads', type=int, help='threads of PyTorch and onnxruntime (default: torch\'s)')
    return parser.parse_args(argv)


def usage_error(message: str) -> SystemExit:
    print(f'export_onnx.py: error: {message}', file=sys.stderr)
    return SystemExit(2)


def build_model(args) -> nn.Module:
    """The backbone or the whole model of the config (eval mode, CPU), with CHECKPOINT loaded when given."""
    from mmengine.registry import MODELS, init_default_scope
    if not osp.isfile(args.config):
        if not args.config.replace('_', '').isalnum():
            raise usage_error(f'{args.config}: no such config file (and not a backbone type such as GCViT)')
        cfg = Config(dict(model=dict(backbone=dict(type=args.config, **args.cfg_options))))
        args.backbone_only = True
    else:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if args.backbone_only:
        backbone_cfg = cfg.model.backbone.copy()
        backbone_cfg.pop('init_cfg', None)  # weights come from CHECKPOINT (ImageNet files need no download here)
        model = revert_sync_batchnorm(MODELS.build(backbone_cfg))
        if args.checkpoint:
            mmvit_backbones.load_pretrained(model, args.checkpoint)
        return model.eval()
    cfg.model.backbone.pop('init_cfg', None)
    # SyncBN (the shipped UPerNet heads) needs a process group and tests `input.size(1) == 0`, which tracing would
    # fix; BatchNorm in eval mode computes the same (mmdet's and mmseg's own export tools convert it the same way)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    two_stage = getattr(model, 'with_rpn', False) or hasattr(model, 'roi_head')
    if two_stage:
        raise usage_error(f'{type(model).__name__}: a two-stage detector computes proposals with NMS inside its '
                          'forward, which is not part of tensor mode; deploy the whole model with tools/deploy.py '
                          '(mmdeploy), or export its backbone (--backbone-only)')
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    preprocessor = cfg.model.get('data_preprocessor', {})
    print(f"input: preprocessed images, mean {preprocessor.get('mean')}, std {preprocessor.get('std')}, "
          f"bgr_to_rgb {preprocessor.get('bgr_to_rgb', False)}, padded to a multiple of "
          f"{preprocessor.get('pad_size_divisor', preprocessor.get('size_divisor', 1))}")
    return TensorMode(model).eval()


# a decorator, not torch.set_grad_enabled(False): main() also runs inside other programs (the tests), whose
# later training must find autograd on
@torch.no_grad()
def main(argv=None) -> int:
    args = parse_args(argv)
    model = build_model(args)
    if not args.checkpoint:
        print('no CHECKPOINT: random weights (structure check only)')
    backbone = model if args.backbone_only else model.model.backbone
    channels = backbone.in_channels
    h, w = args.shape
    example = torch.randn(args.batch, channels, h, w)
    names = [f'level{i}' for i in backbone.out_indices] if args.backbone_only else None
    try:
        names = export_onnx(model, example, args.out, dynamic=args.dynamic, opset=args.opset, output_names=names)
    except OpsetError as err:  # a usage error: the message names the opset to use
        print(f'export_onnx.py: error: {err}', file=sys.stderr)
        return 2
    except ExportError as err:
        print(f'export failed: {err}', file=sys.stderr)
        return 1
    kind = 'backbone' if args.backbone_only else f'{type(model.model).__name__} (tensor mode)'
    print(f'exported {kind} {type(backbone).__name__} to {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MB, '
          f"opset {args.opset}, {'dynamic batch/height/width' if args.dynamic else f'static {args.batch}x{h}x{w}'})")
    print(f"outputs: {', '.join(names)}")
    failed = False
    if not args.no_check:
        if args.check_sizes:
            if len(args.check_sizes) % 2:
                raise usage_error('--check-sizes takes pairs H W')
            sizes = list(zip(args.check_sizes[::2], args.check_sizes[1::2]))
        else:
            sizes = check_sizes(h, w, getattr(backbone, 'min_input_size', 32))
        if not args.dynamic:
            sizes = [(h, w)]
        # the last size also changes the batch size (a dynamic batch axis)
        shapes = [(args.batch + (args.dynamic and i == len(sizes) - 1 and i > 0), channels, sh, sw)
                  for i, (sh, sw) in enumerate(sizes)]
        for check in compare_with_onnxruntime(model, args.out, shapes, rtol=args.rtol):
            print('\n'.join(check.lines()))
            failed |= not check.ok
        print(f"onnxruntime vs PyTorch: {'MISMATCH' if failed else 'ok'} at {len(shapes)} input shape(s), "
              f'tolerance {args.rtol:g} x max|output|')
    if args.latency:
        timing = measure_latency(model, args.out, (1, channels, h, w), repeats=args.repeats, threads=args.threads)
        print(f"latency at {h}x{w}, batch 1, {args.threads or torch.get_num_threads()} thread(s), median of "
              f"{args.repeats}: PyTorch {timing['torch'] * 1e3:.0f} ms (CPU time {timing['torch_cpu'] * 1e3:.0f} ms), "
              f"onnxruntime {timing['onnxruntime'] * 1e3:.0f} ms (CPU time {timing['onnxruntime_cpu'] * 1e3:.0f} ms)")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Train a detector (mmdet 3.x config) or a segmentor (mmseg 1.x config) with an mmvit_backbones backbone.

    python tools/train.py configs/retinanet_pyramidtnt_s_1x.py [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]

The task (detection or segmentation) follows the config's ``default_scope``. Works from a source checkout
without installing the package.
"""
import argparse

from _bootstrap import (
    add_common_args,
    close_distributed,
    exit_if_missing,
    load_config,
    missing_checkpoint,
    missing_data,
    missing_init_checkpoints,
    usage_error,
)
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmvit_backbones  # noqa: F401  (registers the backbones; safe checkpoint loading)
from mmvit_backbones.engine import enable_dynamic_shape_training


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale the lr by the actual batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest one in the work dir')
    add_common_args(parser)
    return parser.parse_args(argv)


def build_config(args) -> Config:
    cfg = load_config(args)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            usage_error('--amp needs a CUDA GPU (mmengine AmpOptimWrapper); drop --amp to train on CPU.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            usage_error('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    # every file the run reads, checked before the runner is built (a missing one would surface minutes later)
    if args.resume is not None:
        load_fix = 'Pass an existing checkpoint to --resume, or --resume alone for the latest one of the work dir.'
    else:
        load_fix = 'Point load_from at an existing checkpoint (--cfg-options load_from=PATH), or set it to None.'
    exit_if_missing(missing_init_checkpoints(cfg),
                    missing_checkpoint(cfg.get('load_from'), 'The checkpoint to start from (load_from)', load_fix),
                    missing_data(cfg, ('train', 'val')))
    if cfg.get('compile'):  # mmengine compiles train_step, forward + backward: see engine/compile.py
        enable_dynamic_shape_training()
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    close_distributed()
    return runner


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Evaluate a trained detector or segmentor checkpoint (COCO mAP / ADE20K mIoU per the config's evaluator).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR] [--cfg-options ...]
                         [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp

from _bootstrap import (
    add_common_args,
    close_distributed,
    exit_if_missing,
    load_config,
    missing_checkpoint,
    missing_data,
    usage_error,
)
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmvit_backbones  # noqa: F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='detection: dump predictions to this .pkl file; '
                        'segmentation: write the predicted masks into this directory')
    parser.add_argument('--show-dir', help='draw predictions and save the images into this directory')
    add_common_args(parser)
    return parser.parse_args(argv)


def build_config(args) -> Config:
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    is_segmentation = cfg.get('default_scope') == 'mmseg'
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            usage_error('--show-dir needs a `visualization` hook in default_hooks')
        hook['draw'] = True
        if is_segmentation:
            cfg.visualizer['save_dir'] = args.show_dir
            hook['interval'] = 1  # every test image, as mmdet's hook does (mmseg's default draws 1 in 50)
        else:
            hook['test_out_dir'] = osp.abspath(args.show_dir)
    if args.out and is_segmentation:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    # the checkpoint and the test data, checked before the runner is built
    exit_if_missing(missing_checkpoint(args.checkpoint, 'The checkpoint to test',
                                       'Train one first (python tools/train.py CONFIG writes it into work_dirs/), or '
                                       'pass the path of a trained checkpoint.'),
                    missing_data(cfg, ('test',)))
    if args.out and cfg.get('default_scope') != 'mmseg' and not args.out.endswith(('.pkl', '.pickle')):
        usage_error('--out must be a .pkl file for detection results')
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out and cfg.get('default_scope') != 'mmseg':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    close_distributed()
    return metrics


if __name__ == '__main__':
    main()

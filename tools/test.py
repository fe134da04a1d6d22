#!/usr/bin/env python
"""Evaluate a trained detector or segmentor checkpoint (COCO mAP / ADE20K mIoU per the config's evaluator).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR] [--cfg-options ...]
                         [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
import os.path as osp

import _bootstrap  # noqa: F401
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmvit_backbones  # noqa: F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', help='detection: dump predictions to this .pkl file; '
                        'segmentation: write the predicted masks into this directory')
    parser.add_argument('--show-dir', help='draw predictions and save the images into this directory')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    is_segmentation = cfg.get('default_scope') == 'mmseg'
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise SystemExit('--show-dir needs a `visualization` hook in default_hooks')
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
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out and cfg.get('default_scope') != 'mmseg':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl file for detection results')
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Deploy a detector or segmentor through mmdeploy to ONNX Runtime, and check the deployed model against PyTorch.

    python tools/deploy.py CONFIG [CHECKPOINT] --work-dir DIR [--deploy-cfg F] [--shape H W] [--img IMAGE]
                           [--opset N] [--cfg-options ...] [--eval]

1. Exports the whole model (preprocessed image in; boxes, scores, labels, masks or class logits out; NMS and RoI
   heads inside the graph) to ``DIR/end2end.onnx`` with mmdeploy and the project's deploy config of the model's task
   (``configs/deploy/``: RetinaNet -> detection, Mask/Cascade Mask R-CNN -> instance-seg, UPerNet -> segmentation),
   dynamic in batch, height and width.
2. Runs PyTorch (mmdet's / mmseg's own inference) and the ONNX Runtime model on IMAGE (default: a synthetic image
   it writes to DIR) at the config's test scale (or ``--shape``) and at a second, smaller scale, and compares what a
   user gets: detections above ``--score-thr`` (boxes, scores, labels, masks) or the class map. Exit status 1 on a
   mismatch (which output, by how much, at which size), else 0 with a one-line summary.
3. Draws both results side by side: ``DIR/pytorch_vs_onnxruntime.png``.
4. ``--eval``: runs the config's test set and metric through the ONNX Runtime model and PyTorch and prints both;
   a summary metric (COCO bbox/segm mAP, mIoU, mAcc, aAcc) that differs by more than ``--metric-tol`` (0.005) is a
   mismatch too.

Without CHECKPOINT the weights are random (PyTorch's layer initialisation, seed 0; saved to
``DIR/random_weights.pth`` so that both runs use the same ones): the check is then one of structure only.
Segmentors whose config slides a window (``test_cfg.mode='slide'``) are deployed as whole-image inference and
compared with PyTorch in whole mode.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import time

import _bootstrap  # noqa: F401

EXIT_BAD_INPUT = 2


# the evaluators' summary numbers; the breakdowns (mAP@50, by object size, per class) are printed, not compared: on a
# small test set one box more or less moves them by more than the tolerance
HEADLINE_METRICS = ('bbox_mAP', 'segm_mAP', 'mIoU', 'mAcc', 'aAcc')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='model config (a shipped config or any mmdet/mmseg config)')
    parser.add_argument('checkpoint', nargs='?', help='trained checkpoint; without it the weights are random')
    parser.add_argument('--work-dir', required=True, help='where end2end.onnx and the drawings are written')
    parser.add_argument('--deploy-cfg', help='mmdeploy deploy config (default: configs/deploy/ for the task)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="test scale to resize to (default: the config's), and the size of the image made "
                        'when --img is not given (default 480 640)')
    parser.add_argument('--img', help='image to run both models on (default: a synthetic one written to DIR)')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the deploy config's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override model config settings, e.g. model.test_cfg.score_thr=0.3')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections above this score must be in both results (default 0.3)')
    parser.add_argument('--eval', action='store_true',
                        help="also evaluate the config's test set with both models and print the metrics; a metric "
                        'a summary metric (mAP, mIoU, mAcc, aAcc) that differs by more than --metric-tol is a mismatch')
    parser.add_argument('--metric-tol', type=float, default=0.005,
                        help='largest difference of a test-set metric between the two runtimes (default 0.005)')
    return parser.parse_args(argv)


def bad_input(message: str) -> SystemExit:
    print(f'deploy.py: error: {message}', file=sys.stderr)
    return SystemExit(EXIT_BAD_INPUT)


def set_test_scale(cfg, scale_wh) -> None:
    """Every ``Resize`` of the test pipelines resizes to ``scale_wh`` (w, h), keeping its aspect-ratio rule."""
    def walk(node):
        if isinstance(node, dict):
            if node.get('type', '').endswith('Resize') and 'scale' in node:
                node['scale'] = tuple(scale_wh)
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)
    walk(cfg.get('test_pipeline'))
    walk(cfg.get('test_dataloader'))


def test_scale(cfg):
    """(w, h) of the first ``Resize`` of the top-level test pipeline (what mmdeploy's create_input applies)."""
    for transform in cfg.get('test_pipeline', []):
        if transform.get('type', '').endswith('Resize') and isinstance(transform.get('scale'), (tuple, list)):
            return tuple(transform['scale'])
    raise bad_input('the config has no test_pipeline with a Resize to a scale; set one or give --shape')


def load_model_config(args):
    from mmengine.config import Config
    if not osp.isfile(args.config):
        raise bad_input(f'config {args.config}: no such file')
    if args.checkpoint and not osp.isfile(args.checkpoint):
        raise bad_input(f'checkpoint {args.checkpoint}: no such file')
    if args.img and not osp.isfile(args.img):
        raise bad_input(f'image {args.img}: no such file')
    if args.deploy_cfg and not osp.isfile(args.deploy_cfg):
        raise bad_input(f'deploy config {args.deploy_cfg}: no such file')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('test_pipeline') is None and 'test_dataloader' in cfg:
        cfg.test_pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    if args.shape:
        set_test_scale(cfg, (args.shape[1], args.shape[0]))
    cfg.model.backbone.pop('init_cfg', None)  # weights come from CHECKPOINT (or are random): nothing to download
    if cfg.get('default_scope') == 'mmseg' and cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        print('the config slides a window at test time; deployed and compared as whole-image inference')
        cfg.model.test_cfg = dict(mode='whole')
    return cfg


def random_checkpoint(task_processor, path: str) -> str:
    import torch
    torch.manual_seed(0)
    model = task_processor.build_pytorch_model(None)
    model.init_weights()  # the config's initialisation (e.g. the detection heads' prior bias), not saturated scores
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def default_image(path: str, shape) -> str:
    """A synthetic image of coloured shapes (the project's synthetic COCO data), written to ``path``'s folder."""
    import shutil
    import tempfile

    from mmvit_backbones.testing.synthetic_data import make_coco_shapes
    with tempfile.TemporaryDirectory() as folder:
        make_coco_shapes(folder, num_train=0, num_val=1, size=tuple(shape), size_jitter=0.0, seed=1)
        shutil.copy(osp.join(folder, 'val2017', '000001.jpg'), path)
    return path


def dataset_meta(cfg, checkpoint: str) -> dict:
    """Class names and palette: the checkpoint's (mmengine writes them) or the config's dataset's."""
    import torch
    from mmengine.registry import DATASETS
    meta = torch.load(checkpoint, map_location='cpu', weights_only=True).get('meta', {}).get('dataset_meta')
    if meta:
        return meta
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    dataset_class = DATASETS.get(f"{cfg.get('default_scope', 'mmdet')}.{dataset.type}")  # the config's scope
    meta = copy.deepcopy(dict(getattr(dataset_class, 'METAINFO', {})))
    meta.update(dataset.get('metainfo') or {})
    return meta


def draw(cfg, meta: dict, image, results, names, score_thr: float, out_file: str) -> None:
    """The results drawn on the image, side by side, into ``out_file``."""
    import mmcv
    import numpy as np
    from mmengine.registry import VISUALIZERS
    panels = []
    for name, result in zip(names, results):
        visualizer_cfg = dict(cfg.get('visualizer', {}), name=f'deploy_{name}_{time.time_ns()}', vis_backends=None)
        visualizer = VISUALIZERS.build(visualizer_cfg)
        visualizer.dataset_meta = meta
        kwargs = dict(pred_score_thr=score_thr) if cfg.get('default_scope') != 'mmseg' else {}
        visualizer.add_datasample(name, image, result, draw_gt=False, show=False, **kwargs)
        panels.append(visualizer.get_image())  # RGB
    mmcv.imwrite(np.ascontiguousarray(np.concatenate(panels, axis=1)[..., ::-1]), out_file)


def evaluate(task_processor, model, cfg, work_dir: str) -> dict:
    """The config's test set and metric on ``model`` (mmdeploy's test runner, batch size 1)."""
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.batch_size = 1
    loader.dataset = task_processor.build_dataset(loader.dataset)
    runner = task_processor.build_test_runner(model, work_dir, dataloader=task_processor.build_dataloader(loader))
    return runner.test()


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_model_config(args)

    import mmcv
    import torch
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.deploy import (
        deploy_config_for,
        mmdeploy_compat,  # noqa: F401  (applies the torch 2.13 fixes)
        model_task,
    )
    from mmvit_backbones.deploy.compare import compare_detections, compare_segmentation

    task = model_task(cfg)
    deploy_path = args.deploy_cfg or deploy_config_for(cfg)
    deploy_cfg = load_config(deploy_path)[0]
    if args.opset:
        deploy_cfg.onnx_config.opset_version = args.opset
    os.makedirs(args.work_dir, exist_ok=True)
    print(f'{task} model, deploy config {osp.relpath(deploy_path)}, opset {deploy_cfg.onnx_config.opset_version}')

    task_processor = build_task_processor(cfg, deploy_cfg, 'cpu')
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = random_checkpoint(task_processor, osp.join(args.work_dir, 'random_weights.pth'))
        print(f'no CHECKPOINT: random weights (seed 0, saved to {checkpoint}); the comparison checks the '
              'structure only')
    image = args.img or default_image(osp.join(args.work_dir, 'input.jpg'), args.shape or (480, 640))

    start = time.perf_counter()
    torch2onnx(image, args.work_dir, 'end2end.onnx', deploy_cfg, cfg, checkpoint, device='cpu')
    onnx_file = osp.join(args.work_dir, 'end2end.onnx')
    print(f'exported {onnx_file} ({osp.getsize(onnx_file) / 2**20:.1f} MB) in {time.perf_counter() - start:.0f} s')

    torch_model = task_processor.build_pytorch_model(checkpoint)
    ort_model = task_processor.build_backend_model([onnx_file], task_processor.update_data_preprocessor)
    scale = test_scale(cfg)
    second = (max(64, scale[0] * 3 // 4 + 7), max(64, scale[1] * 3 // 4 + 5))  # not a multiple of 32
    comparisons, drawn = [], None
    for size in (scale, second):
        size_cfg = copy.deepcopy(cfg)
        set_test_scale(size_cfg, size)
        inputs, _ = build_task_processor(size_cfg, deploy_cfg, 'cpu').create_input(image, None)
        with torch.no_grad():
            torch_result = torch_model.test_step(copy.deepcopy(inputs))[0]
            ort_result = ort_model.test_step(copy.deepcopy(inputs))[0]
        input_hw = tuple(ort_result.metainfo.get('batch_input_shape', ort_result.metainfo['img_shape']))
        if task == 'segmentation':
            comparison = compare_segmentation(torch_result, ort_result, input_hw)
        else:
            comparison = compare_detections(torch_result, ort_result, input_hw, score_thr=args.score_thr)
        comparisons.append(comparison)
        print(f"input {input_hw[0]}x{input_hw[1]}: {'ok' if comparison.ok else 'MISMATCH'}, {comparison.summary}")
        for problem in comparison.problems:
            print(f'  {problem}')
        drawn = drawn or (torch_result, ort_result)
    out_file = osp.join(args.work_dir, 'pytorch_vs_onnxruntime.png')
    draw(cfg, dataset_meta(cfg, checkpoint), mmcv.imread(image, channel_order='rgb'), drawn,
         ('pytorch', 'onnxruntime'), args.score_thr, out_file)
    print(f'drawn: {out_file} (left PyTorch, right ONNX Runtime)')

    metric_problems = []
    if args.eval:
        ort_metrics = evaluate(task_processor, ort_model, cfg, osp.join(args.work_dir, 'eval_onnxruntime'))
        torch_metrics = evaluate(task_processor, torch_model, cfg, osp.join(args.work_dir, 'eval_pytorch'))
        print('metric'.ljust(32), 'PyTorch'.rjust(9), 'ONNX Runtime'.rjust(13))
        for key, value in torch_metrics.items():
            if isinstance(value, (int, float)):
                ort_value = ort_metrics.get(key, float('nan'))
                headline = key.endswith(HEADLINE_METRICS)
                print(key.ljust(32), f'{value:9.4f}', f'{ort_value:13.4f}' + ('' if headline else '   (not compared)'))
                if headline and not abs(value - ort_value) <= args.metric_tol:
                    metric_problems.append(f'{key} {ort_value:.4f} in ONNX Runtime, {value:.4f} in PyTorch '
                                           f'(tolerance {args.metric_tol})')

    mismatches = [(f'{c.size[0]}x{c.size[1]}', c.problems) for c in comparisons if not c.ok]
    if metric_problems:
        mismatches.append(('test set', metric_problems))
    if mismatches:
        print(f'MISMATCH: ONNX Runtime differs from PyTorch at {", ".join(where for where, _ in mismatches)}: '
              f'{"; ".join(p for _, problems in mismatches for p in problems)}')
        return 1
    sizes = ' and '.join(f'{c.size[0]}x{c.size[1]}' for c in comparisons)
    print(f'ok: {onnx_file} equals PyTorch at {sizes} ({comparisons[0].summary})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Train and evaluate a detector on a synthetic COCO-format dataset, on CPU, in a few minutes.

    python tools/demo.py              # RetinaNet + PyramidTNT (configs/retinanet_pyramidtnt_s_1x.py)
    python tools/demo.py --config configs/retinanet_gcvit_t_1x.py
    python tools/demo.py --cfg-options model.backbone.type=ShuntedTransformer

It writes the dataset (squares, circles, triangles with exact boxes and masks) to ``data/coco_shapes``, takes the
user-facing config unchanged except for the data, the model size (the backbone's smallest variant, a narrower
neck/head) and the schedule, trains from scratch, evaluates COCO bbox mAP on the validation split, prints it, and
draws the detections on a validation image (``<work-dir>/demo_detections.png``).
"""
import argparse
import glob
import os.path as osp
import time

import _bootstrap  # noqa: F401
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmvit_backbones  # noqa: F401
from mmvit_backbones.testing.cpu_configs import narrow_detector, short_schedule, shrink_config
from mmvit_backbones.testing.synthetic_data import make_coco_shapes

DEMO_WIDTH = 64  # neck/head channels of the CPU-sized detector


def demo_config(config: str, data_root: str, work_dir: str, epochs: int, lr: float, cfg_options=None) -> Config:
    cfg = Config.fromfile(config)
    if cfg.get('default_scope') != 'mmdet':
        raise SystemExit(f'{config} is not a detection config; the demo trains a detector')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg = shrink_config(cfg, data_root, scale=(192, 160), batch_size=4, small_backbone=True)
    cfg = short_schedule(cfg, epochs=epochs, warmup_iters=50)
    # evaluated once, after training, on the validation split (test_dataloader = val split in mmdet configs)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.optim_wrapper.optimizer.lr = lr  # from scratch rather than fine-tuning ImageNet weights
    cfg.optim_wrapper.clip_grad = dict(max_norm=10.0)
    narrow_detector(cfg.model, DEMO_WIDTH)
    cfg.work_dir = work_dir
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=False)
    return cfg


def save_detections(runner: Runner, cfg: Config, data_root: str, out_file: str, score_thr: float = 0.5,
                    num_images: int = 4, upscale: int = 2) -> None:
    """Draw the detections of the first ``num_images`` validation images side by side (enlarged) into one PNG."""
    import mmcv
    import numpy as np
    from mmdet.apis import inference_detector
    from mmdet.registry import VISUALIZERS
    model = runner.model
    model.cfg = cfg
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='demo_visualizer'))
    visualizer.dataset_meta = runner.test_dataloader.dataset.metainfo
    panels = []
    for image_path in sorted(glob.glob(osp.join(data_root, 'val2017', '*.jpg')))[:num_images]:
        result = inference_detector(model, image_path)
        result.pred_instances.bboxes *= upscale
        if 'masks' in result.pred_instances:  # instance masks (Mask R-CNN, Cascade) enlarged with the image
            masks = result.pred_instances.masks
            result.pred_instances.masks = masks.repeat_interleave(upscale, -2).repeat_interleave(upscale, -1)
        image = mmcv.imrescale(mmcv.imread(image_path, channel_order='rgb'), upscale)
        visualizer.add_datasample('demo', image, data_sample=result, draw_gt=False, pred_score_thr=score_thr)
        panels.append(visualizer.get_image())
    height = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels]
    mmcv.imwrite(np.concatenate(panels, axis=1)[..., ::-1], out_file)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='configs/retinanet_pyramidtnt_s_1x.py')
    parser.add_argument('--data-root', default='data/coco_shapes')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--epochs', type=int, default=24)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. model.backbone.type=GCViT')
    args = parser.parse_args()

    start = time.time()
    if not osp.isfile(osp.join(args.data_root, 'annotations', 'instances_val2017.json')):
        print(f'writing the synthetic COCO-format dataset to {args.data_root}')
        make_coco_shapes(args.data_root, num_train=args.num_train, num_val=args.num_val, size=(160, 192))
    cfg = demo_config(args.config, args.data_root, args.work_dir, args.epochs, args.lr, args.cfg_options)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    out_file = osp.join(args.work_dir, 'demo_detections.png')
    save_detections(runner, cfg, args.data_root, out_file)
    bbox_map = metrics.get('coco/bbox_mAP', float('nan'))
    print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min: '
          f'{cfg.model.type} + {cfg.model.backbone.type}, COCO bbox mAP {bbox_map:.3f} '
          f'(mAP@50 {metrics.get("coco/bbox_mAP_50", float("nan")):.3f}) on {args.data_root}/val2017; '
          f'detections of 4 validation images drawn in {out_file}')


if __name__ == '__main__':
    main()

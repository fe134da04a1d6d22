#!/usr/bin/env python
"""Compare the two any-size token-mixing mechanisms of MLPMixer/ResMLP (README "MLP-Mixer and ResMLP at any size").

    python dev/compare_mlp_any_size.py                      # drift with filled weights + RetinaNet demo runs
    python dev/compare_mlp_any_size.py --skip-detection     # drift only (seconds)

``window``: the pretrained token operator within (shifted) windows of the pretraining grid; ``resample``: RaftMLP's
bicubic resize of the grid to the pretraining grid around every token-mixing step
(:mod:`mmvit_backbones.models.layers.token_mixing`).

1. **Feature drift 224 -> 448** with weights filled by the parity-fixture rule in the official layout (Mixer-B/16's
   Flax tree, ResMLP-S24's deit keys), loaded through the converters: a synthetic shapes image at 224x224 and the
   same image resized to 448x448; the stride-16 map of the 448 input (average-pooled 2x2 to 14x14) against the 224
   one, as relative L2 distance ``|pool(f448) - f224| / |f224|``, of the stem (the floor: the patches themselves see
   the content at twice the scale) and after each quarter of the blocks. At 224 both
   mechanisms are the official model, so this measures how much each one changes what the model computes when the
   same content arrives at twice the resolution.
2. **Detection**: ``tools/demo.py`` (RetinaNet, synthetic COCO shapes, CPU) trained from the same random weights
   (``randomness.seed``) with each mechanism, everything else equal; COCO bbox mAP on the validation split. The
   demo's 192x160 images give a 12x10 token grid; ``--pretrain-img-size 64`` (a 4x4-token window, 3x3 windows per
   image) reproduces the ratio of an 800x1333 image to the 224 pretraining size (50x84 tokens, 4x6 windows of 14x14),
   which is where the mechanisms differ; at 224 the demo grid would fit into one window.
"""
import argparse
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import _bootstrap
import torch
import torch.nn.functional as F

from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models.backbones import MLPMixer, ResMLP
from mmvit_backbones.testing.parity import official_state_dict
from mmvit_backbones.testing.synthetic_data import make_coco_shapes

MODES = ('window', 'resample')


def mixer_flax_keys(arch: str) -> List[list]:
    """The official Flax parameter tree of a Mixer variant as fixture ``keys`` ([key, shape, dtype])."""
    s = MLPMixer.arch_zoo[arch]
    p, d, ds, dc = s['patch_size'], s['embed_dims'], s['tokens_mlp_dims'], s['channels_mlp_dims']
    n = (224 // p) ** 2
    keys = [['stem/kernel', [p, p, 3, d]], ['stem/bias', [d]]]
    for i in range(s['depth']):
        b = f'MixerBlock_{i}'
        keys += [[f'{b}/LayerNorm_0/scale', [d]], [f'{b}/LayerNorm_0/bias', [d]],
                 [f'{b}/token_mixing/Dense_0/kernel', [n, ds]], [f'{b}/token_mixing/Dense_0/bias', [ds]],
                 [f'{b}/token_mixing/Dense_1/kernel', [ds, n]], [f'{b}/token_mixing/Dense_1/bias', [n]],
                 [f'{b}/LayerNorm_1/scale', [d]], [f'{b}/LayerNorm_1/bias', [d]],
                 [f'{b}/channel_mixing/Dense_0/kernel', [d, dc]], [f'{b}/channel_mixing/Dense_0/bias', [dc]],
                 [f'{b}/channel_mixing/Dense_1/kernel', [dc, d]], [f'{b}/channel_mixing/Dense_1/bias', [d]]]
    keys += [['pre_head_layer_norm/scale', [d]], ['pre_head_layer_norm/bias', [d]]]
    return [k + ['float32'] for k in keys]


def resmlp_official_keys(arch: str) -> List[list]:
    """The official deit ``resmlp_models.py`` state-dict layout of a ResMLP variant as fixture ``keys``."""
    s = ResMLP.arch_zoo[arch]
    p, d = s['patch_size'], s['embed_dims']
    n = (224 // p) ** 2
    keys = [['patch_embed.proj.weight', [d, 3, p, p]], ['patch_embed.proj.bias', [d]]]
    for i in range(s['depth']):
        b = f'blocks.{i}'
        keys += [[f'{b}.gamma_1', [d]], [f'{b}.gamma_2', [d]], [f'{b}.norm1.alpha', [d]], [f'{b}.norm1.beta', [d]],
                 [f'{b}.attn.weight', [n, n]], [f'{b}.attn.bias', [n]], [f'{b}.norm2.alpha', [d]],
                 [f'{b}.norm2.beta', [d]], [f'{b}.mlp.fc1.weight', [4 * d, d]], [f'{b}.mlp.fc1.bias', [4 * d]],
                 [f'{b}.mlp.fc2.weight', [d, 4 * d]], [f'{b}.mlp.fc2.bias', [d]]]
    keys += [['norm.alpha', [d]], ['norm.beta', [d]]]
    return [k + ['float32'] for k in keys]


def shapes_image(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic image (filled squares, circles and triangles on a gradient), (1, 3, size, size), roughly
    zero-mean unit-scale like a normalised photo."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing='ij')
    img = torch.stack([0.3 * xs, 0.3 * ys, 0.3 * (1 - xs)]) - 0.15
    for _ in range(8):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.15]) + torch.tensor([0, 0, 0.05]))
        color = torch.rand(3, generator=g) * 2 - 1
        kind = int(torch.randint(0, 3, (1, ), generator=g))
        if kind == 0:
            mask = ((ys - cy).abs() < r) & ((xs - cx).abs() < r)
        elif kind == 1:
            mask = (ys - cy) ** 2 + (xs - cx) ** 2 < r ** 2
        else:
            mask = (ys > cy - r) & (ys < cy + r) & ((xs - cx).abs() < (ys - cy + r) / 2)
        img[:, mask] = color[:, None]
    return img[None]


def stage_features(model, x: torch.Tensor) -> List[torch.Tensor]:
    """The stride-16 token maps (B, D, h, w) of the stem and after each quarter of the blocks (the last one after the
    final norm)."""
    ends = [model.stage_blocks(s)[-1] for s in range(1, 5)]
    captured: Dict[int, torch.Tensor] = {}
    hooks = [model.blocks[i].register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
             for i in ends[:-1]]
    hooks.append(model.stem.proj.register_forward_hook(
        lambda _m, _i, out: captured.__setitem__('stem', out.permute(0, 2, 3, 1))))
    hooks.append(model.norm.register_forward_hook(lambda _m, _i, out: captured.__setitem__(-1, out)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    feats = [captured['stem']] + [captured[i] for i in ends[:-1]] + [captured[-1]]
    maps = [f.permute(0, 3, 1, 2) for f in feats]
    if model.patch_size == 8:
        maps = [F.avg_pool2d(m, 2) for m in maps]
    return maps


def drift(name: str, build, keys: List[list], image_seed: int = 0) -> Dict[str, List[float]]:
    state = official_state_dict(dict(keys=keys))
    small = shapes_image(224, image_seed)
    large = F.interpolate(small, size=(448, 448), mode='bicubic', align_corners=False)
    result = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = build(token_mixing=mode)
        load_pretrained(model, state, logger='silent')
        model.eval()
        at224, at448 = stage_features(model, small), stage_features(model, large)
        result[mode] = [((F.avg_pool2d(b, 2) - a).norm() / a.norm()).item() for a, b in zip(at224, at448)]
        print(f'{name} {mode:<8} drift 224->448 of the stem and after each quarter of the blocks: '
              + ' '.join(f'{v:.3f}' for v in result[mode]), flush=True)
    return result


def start_detection(backbone: str, mode: str, args) -> subprocess.Popen:
    """Start one demo run (RetinaNet + ``backbone`` with token mixing ``mode``) in a subprocess."""
    options = [f'model.backbone.type={backbone}', f'model.backbone.token_mixing={mode}',
               f'model.backbone.pretrain_img_size={args.pretrain_img_size}', f'randomness.seed={args.seed}']
    cmd = [sys.executable, osp.join(_bootstrap.ROOT, 'tools', 'demo.py'), '--epochs', str(args.epochs),
           '--num-train', str(args.num_train), '--num-val', str(args.num_val), '--data-root', args.data_root,
           '--work-dir', f'{args.work_dir}/{backbone}_{mode}', '--cfg-options'] + options
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_detection(proc: subprocess.Popen, backbone: str, mode: str, start: float) -> Tuple[float, float, float]:
    """Wait for a demo run; returns (bbox mAP, mAP@50, minutes)."""
    stdout, stderr = proc.communicate()
    minutes = (time.time() - start) / 60
    found = re.search(r'COCO bbox mAP ([\d.]+) \(mAP@50 ([\d.]+)\)', stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f'demo run failed ({backbone}, {mode}):\n{stdout[-2000:]}\n{stderr[-3000:]}')
    result = float(found.group(1)), float(found.group(2)), minutes
    print(f'{backbone} {mode:<8} RetinaNet demo: bbox mAP {result[0]:.3f}, mAP@50 {result[1]:.3f} '
          f'({minutes:.1f} min)', flush=True)
    return result


def shapes_segmentation_data(num: int, seed: int, size=(160, 192)) -> Tuple[torch.Tensor, torch.Tensor]:
    """The demo's synthetic scenes (``synthetic_data._scene``) as normalised images and per-pixel labels
    (0 background, 1..3 square/circle/triangle)."""
    import cv2
    import numpy as np

    from mmvit_backbones.testing.synthetic_data import _scene
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(num):
        image, objects = _scene(rng, size[0], size[1], max_objects=3)
        label = np.zeros(size, np.uint8)
        for cls, poly in objects:
            cv2.fillPoly(label, [np.round(poly).astype(np.int32)], int(cls) + 1)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0)
        labels.append(torch.from_numpy(label).long())
    return torch.stack(images), torch.stack(labels)


def segmentation_proxy(backbone: str, args) -> Dict[str, float]:
    """A dense-prediction stand-in when mmdet/mmcv are unavailable: the demo's small backbone + a 1x1 classifier on
    its stride-8 level, trained from the same random weights with each mechanism (same data order, same steps),
    scored by mIoU over the 4 classes on held-out scenes (upsampled logits)."""
    from mmvit_backbones.registry import MODELS as BACKBONES
    from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES
    train_x, train_y = shapes_segmentation_data(args.num_train, seed=1)
    val_x, val_y = shapes_segmentation_data(args.num_val, seed=2)
    result = {}
    for mode in MODES:
        torch.manual_seed(args.seed)
        model = BACKBONES.build(dict(type=backbone, token_mixing=mode, pretrain_img_size=args.pretrain_img_size,
                                     out_indices=(1, ), **SMALL_BACKBONES[backbone]))
        head = torch.nn.Conv2d(model.out_channels[1], 4, 1)
        params = list(model.parameters()) + list(head.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
        steps = args.epochs * args.num_train // 4
        generator = torch.Generator().manual_seed(args.seed)
        start = time.time()
        model.train()
        with torch.enable_grad():
            for step in range(steps):
                index = torch.randint(0, args.num_train, (4, ), generator=generator)
                logits = F.interpolate(head(model(train_x[index])[0]), size=train_y.shape[-2:], mode='bilinear')
                loss = F.cross_entropy(logits, train_y[index])
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([F.interpolate(head(model(val_x[i:i + 8])[0]), size=val_y.shape[-2:],
                                            mode='bilinear').argmax(1) for i in range(0, len(val_x), 8)])
        ious = [((pred == c) & (val_y == c)).sum().item() / max(((pred == c) | (val_y == c)).sum().item(), 1)
                for c in range(4)]
        result[mode] = sum(ious) / 4
        print(f'{backbone} {mode:<8} segmentation proxy ({steps} steps, final loss {loss.item():.3f}, '
              f'{(time.time() - start) / 60:.1f} min): mIoU {result[mode]:.3f} (classes: '
              + ' '.join(f'{v:.3f}' for v in ious) + ')', flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backbones', nargs='+', default=['MLPMixer', 'ResMLP'], choices=['MLPMixer', 'ResMLP'])
    parser.add_argument('--skip-detection', action='store_true')
    parser.add_argument('--skip-drift', action='store_true')
    parser.add_argument('--segmentation-proxy', action='store_true',
                        help='instead of the RetinaNet demo runs (which need mmdet/mmcv): a pure-torch stand-in')
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--pretrain-img-size', type=int, default=64,
                        help='window (pretraining grid x 16 px) of the from-scratch demo models')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--parallel', action='store_true', help='run the two mechanisms\' demo runs at the same time')
    parser.add_argument('--data-root', default='data/coco_shapes')
    parser.add_argument('--work-dir', default='work_dirs/compare_mlp_any_size')
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    if not args.skip_drift:
        if 'MLPMixer' in args.backbones:
            drift('Mixer-B/16', lambda **kw: MLPMixer(arch='b16', **kw), mixer_flax_keys('b16'))
        if 'ResMLP' in args.backbones:
            drift('ResMLP-S24', lambda **kw: ResMLP(arch='24', **kw), resmlp_official_keys('24'))
    if args.segmentation_proxy:
        for backbone in args.backbones:
            segmentation_proxy(backbone, args)
    elif not args.skip_detection:
        torch.set_grad_enabled(True)
        if not osp.isfile(osp.join(args.data_root, 'annotations', 'instances_val2017.json')):
            # written once here, so that parallel runs do not both write it (tools/demo.py's default data)
            make_coco_shapes(args.data_root, num_train=args.num_train, num_val=args.num_val, size=(160, 192))
        for backbone in args.backbones:
            results = {}
            if args.parallel:  # both runs at once (each gets its share of the CPUs)
                start = time.time()
                procs = {mode: start_detection(backbone, mode, args) for mode in MODES}
                results = {mode: finish_detection(procs[mode], backbone, mode, start) for mode in MODES}
            else:
                for mode in MODES:
                    start = time.time()
                    results[mode] = finish_detection(start_detection(backbone, mode, args), backbone, mode, start)
            best = max(MODES, key=lambda m: results[m][0])
            print(f'{backbone}: {best} wins the detection comparison '
                  f'({results[best][0]:.3f} vs {min(r[0] for r in results.values()):.3f} bbox mAP)', flush=True)


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Deployment breadth checks, too long for the test suite (run by hand; results in docs/guides/deployment.md).

    python dev/deploy_breadth.py configs  [--out results.md]   # every shipped config through tools/deploy.py
    python dev/deploy_breadth.py variants [--out results.md]   # every distinct arch_zoo variant, backbone export
    python dev/deploy_breadth.py opsets   [--out results.md]   # every family's small backbone at opsets 11-18
    python dev/deploy_breadth.py latency CONFIG [--threads N]  # ORT vs PyTorch at 800x1333 (random weights)

``configs``: each config shrunk as the suite does it (``shrink_config(small_backbone=True)``: the family's small
backbone with the config's other backbone settings, neck/heads 32 channels wide, test scale 160x128, synthetic data),
random weights, exported by mmdeploy at its task's deploy config and compared with PyTorch at two sizes (for the
R-CNNs every detection above their score threshold, 0.05).
``variants``: each backbone variant (random weights) exported with a dynamic size at 64x96, compared at two more
sizes; file size against its float32 parameter bytes. ``opsets``: the same for the small backbones at each opset.
``latency``: the full-size config deployed at 800x1333 (1333x800 test scale, a 800x1333 image), then the median
wall-clock time of 5 runs of PyTorch's ``test_step`` and ONNX Runtime's on the same preprocessed input, after a warm-up.
"""
import argparse
import contextlib
import glob
import io
import os
import os.path as osp
import sys
import tempfile
import time

import _bootstrap  # dev/: the repository root and tools/ on sys.path

ROOT = _bootstrap.ROOT


def run_configs(pattern: str):
    import deploy
    import torch
    from mmengine.config import Config

    from mmvit_backbones.testing.cpu_configs import narrow_detector, shrink_config
    from mmvit_backbones.testing.synthetic_data import make_ade_shapes, make_coco_shapes
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        coco = osp.join(folder, 'coco')
        make_coco_shapes(coco, num_train=1, num_val=2, size=(128, 160))
        ade = make_ade_shapes(osp.join(folder, 'ade'), num_train=1, num_val=2, size=(128, 160))
        for path in sorted(glob.glob(osp.join(ROOT, 'configs', pattern))):
            name = osp.basename(path)[:-3]
            cfg = Config.fromfile(path)
            segmentation = cfg.get('default_scope') == 'mmseg'
            cfg = shrink_config(cfg, ade if segmentation else coco, scale=(160, 128), small_backbone=True)
            if not segmentation:
                narrow_detector(cfg.model, 32)
            # R-CNNs: every detection compared (their test_cfg.score_thr), as tests/deploy/test_deploy_tool.py does
            rcnn = ['--score-thr', '0.05'] if 'roi_head' in cfg.model else []
            small = osp.join(folder, f'{name}.py')
            cfg.dump(small)
            work = osp.join(folder, name)
            start = time.perf_counter()
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    status = deploy.main([small, '--work-dir', work] + rcnn)
            except Exception as err:  # noqa: BLE001  (recorded in the table)
                status, printed = 'error', io.StringIO(f'{type(err).__name__}: {str(err).splitlines()[0][:200]}')
            seconds = time.perf_counter() - start
            lines = printed.getvalue().strip().splitlines()
            size = next((ln.split('(')[1].split(')')[0] for ln in lines if ln.startswith('exported ')), '-')
            ratio = '-'
            onnx_path, weights = osp.join(work, 'end2end.onnx'), osp.join(work, 'random_weights.pth')
            if osp.isfile(onnx_path) and osp.isfile(weights):  # the file against its float32 parameter bytes
                state = torch.load(weights, map_location='cpu', weights_only=False)
                state = state.get('state_dict', state)
                params = sum(t.numel() * 4 for t in state.values() if torch.is_tensor(t) and t.is_floating_point())
                ratio = f'{os.path.getsize(onnx_path) / params:.3f}'
            result = lines[-1] if lines else ''
            verdict = 'equal' if status == 0 else f'FAIL ({status})'
            summary = result.split('(', 1)[1].rstrip(')') if status == 0 and '(' in result else result[:160]
            rows.append((name, cfg.model.backbone.type, verdict, size, ratio, f'{seconds:.0f}', summary))
            print(' | '.join(rows[-1]), flush=True)
            for onnx_file in glob.glob(osp.join(work, '*.onnx')):
                os.remove(onnx_file)
    return ['config', 'backbone (small)', 'ORT vs PyTorch', 'end2end.onnx', 'file / params', 's',
            'at the test scale'], rows


def _export_row(label: str, model, folder: str, opset: int):
    import torch

    from mmvit_backbones.export import ExportError, compare_with_onnxruntime, export_onnx
    path = osp.join(folder, 'model.onnx')
    params = sum(p.numel() for p in model.parameters()) * 4
    start = time.perf_counter()
    try:
        export_onnx(model, torch.randn(1, 3, 64, 96), path, dynamic=True, opset=opset)
    except ExportError as err:
        return (label, str(opset), 'FAIL', '-', '-', str(err).splitlines()[0][:200])
    checks = compare_with_onnxruntime(model, path, [(1, 3, 64, 96), (1, 3, 93, 115), (2, 3, 71, 53)])
    diff = max(d / max(s, 1e-12) for c in checks for _, d, s in c.diffs)
    ratio = os.path.getsize(path) / params
    ok = all(c.ok for c in checks) and ratio <= 1.25
    os.remove(path)
    return (label, str(opset), 'equal' if ok else 'FAIL', f'{params / 2**20:.1f} MB', f'{ratio:.3f}',
            f'max relative diff {diff:.1e} at 3 shapes, {time.perf_counter() - start:.0f} s')


def run_variants(families):
    import torch

    import mmvit_backbones
    from mmvit_backbones.models.backbones import PyramidBackbone
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in sorted(mmvit_backbones.__all__):
            cls = getattr(mmvit_backbones, name)
            if not (isinstance(cls, type) and issubclass(cls, PyramidBackbone) and cls is not PyramidBackbone):
                continue
            if families and name not in families:
                continue
            seen = {}
            for arch, settings in cls.arch_zoo.items():
                seen.setdefault(repr(sorted(settings.items())), arch)
            for arch in seen.values():
                torch.manual_seed(0)
                model = cls(arch=arch).eval()
                rows.append(_export_row(f'{name} {arch}', model, folder, 17))
                print(' | '.join(rows[-1]), flush=True)
                del model
    return ['variant', 'opset', 'ORT vs PyTorch', 'fp32 params', 'file / params', 'detail'], rows


def run_opsets():
    import torch

    from mmvit_backbones.export import HIGHEST_OPSET, LOWEST_OPSET
    from mmvit_backbones.registry import MODELS
    from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, kwargs in sorted(SMALL_BACKBONES.items()):
            torch.manual_seed(0)
            model = MODELS.build(dict(type=name, **kwargs)).eval()
            for opset in range(LOWEST_OPSET, HIGHEST_OPSET + 1):
                rows.append(_export_row(f'{name} (small)', model, folder, opset))
                print(' | '.join(rows[-1]), flush=True)
    return ['backbone', 'opset', 'ORT vs PyTorch', 'fp32 params', 'file / params', 'detail'], rows


def run_latency(config: str, threads: int):
    import copy
    import statistics

    import deploy
    import torch
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config

    from mmvit_backbones.deploy import deploy_config_for
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        image = deploy.default_image(osp.join(folder, 'input.jpg'), (800, 1333))
        status = deploy.main([config, '--work-dir', folder, '--img', image])
        cfg = deploy.load_model_config(deploy.parse_args([config, '--work-dir', folder]))
        deploy_cfg = load_config(deploy_config_for(cfg))[0]
        task_processor = build_task_processor(cfg, deploy_cfg, 'cpu')
        torch_model = task_processor.build_pytorch_model(osp.join(folder, 'random_weights.pth'))
        ort_model = task_processor.build_backend_model([osp.join(folder, 'end2end.onnx')],
                                                       task_processor.update_data_preprocessor)
        inputs, _ = task_processor.create_input(image, None)
        timings = {}
        for name, model in (('PyTorch', torch_model), ('ONNX Runtime', ort_model)):
            runs = []
            with torch.no_grad():
                for _ in range(6):  # the first is the warm-up
                    start = time.perf_counter()
                    model.test_step(copy.deepcopy(inputs))
                    runs.append(time.perf_counter() - start)
            timings[name] = statistics.median(runs[1:])
        shape = tuple(inputs['inputs'][0].shape[-2:])
    row = (osp.basename(config), f'{shape[0]}x{shape[1]}', str(threads), f"{timings['PyTorch']:.2f}",
           f"{timings['ONNX Runtime']:.2f}", f"{timings['PyTorch'] / timings['ONNX Runtime']:.2f}",
           'equal' if status == 0 else 'FAIL')
    return ['config', 'input', 'threads', 'PyTorch s', 'ONNX Runtime s', 'speed-up', 'ORT vs PyTorch'], [row]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['configs', 'variants', 'opsets', 'latency'])
    parser.add_argument('config', nargs='?', help='latency: the full-size config')
    parser.add_argument('--threads', type=int, default=2, help='latency: threads of both runtimes (default 2)')
    parser.add_argument('--pattern', default='*.py', help='configs: file name pattern under configs/')
    parser.add_argument('--families', nargs='+', help='variants: only these classes (e.g. PlainViT TNT)')
    parser.add_argument('--out', help='also write the table (Markdown) to this file')
    args = parser.parse_args()
    import mmvit_backbones  # noqa: F401
    header, rows = {'configs': lambda: run_configs(args.pattern), 'variants': lambda: run_variants(args.families),
                    'opsets': run_opsets, 'latency': lambda: run_latency(args.config, args.threads)}[args.what]()
    table = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + ['| ' + ' | '.join(r) + ' |'
                                                                              for r in rows]
    failed = sum('equal' not in r for r in rows)
    table.append(f'\n{len(rows) - failed} of {len(rows)} equal.')
    print('\n'.join(table))
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(table) + '\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

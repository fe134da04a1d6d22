#!/usr/bin/env python
"""Benchmark the backbones: throughput, peak memory, parameters and FLOPs per input size.

    python tools/benchmark.py                                   # every backbone, 800x1333 and 512x512
    python tools/benchmark.py --models PyramidTNT:s GCViT:t --sizes 512x512 --backward
    python tools/benchmark.py --models ShuntedTransformer:s --sizes 800x1333 --backward --compare-naive

Each (model, size) runs in a fresh subprocess so that peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of the process's peak resident memory over the built model.
``--compare-naive`` runs the same weights with textbook attention (explicit softmax(QK^T)V instead of
``scaled_dot_product_attention``) and reports the speed ratio, the memory of both and the max output difference.
FLOPs are counted by ``torch.utils.flop_counter`` (multiply-adds x2) for one forward pass.
"""
import argparse
import multiprocessing as mp
import resource
import time
from typing import Dict, List

import _bootstrap  # noqa: F401
import torch

DEFAULT_MODELS = ['PyramidTNT:s', 'GCViT:t', 'ShuntedTransformer:s', 'T2TViT:14', 'PlainViT:s', 'BoTNet:50']


def _build(spec: str):
    import mmvit_backbones  # noqa: F401
    from mmengine.registry import MODELS
    type_name, _, arch = spec.partition(':')
    kwargs = dict(type=type_name)
    if arch:
        kwargs['arch'] = arch
    return MODELS.build(kwargs)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(spec: str, size, args, naive: bool, queue) -> None:
    from mmvit_backbones.models.layers import naive_attention_mode
    torch.manual_seed(0)
    torch.set_num_threads(args.threads) if args.threads else None
    device = torch.device(args.device)
    model = _build(spec).to(device)
    model.train(args.backward)
    x = torch.randn(args.batch, 3, *size, device=device, generator=torch.Generator().manual_seed(0)) \
        if device.type == 'cpu' else torch.randn(args.batch, 3, *size, device=device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def step():
        if args.backward:
            outs = model(x)
            sum(o.float().mean() for o in outs).backward()
            return outs
        with torch.no_grad():
            return model(x)

    with naive_attention_mode(naive):
        base_rss = _rss_mb()
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        for _ in range(args.warmup):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(args.iters):
            outs = step()
        sync()
        elapsed = (time.perf_counter() - start) / args.iters
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else _rss_mb() - base_rss)
        model.eval()
        with torch.no_grad():
            reference = [o.float().cpu() for o in model(x)]
    queue.put(dict(seconds=elapsed, peak_mb=peak, outputs=reference if args.compare_naive else None))


def _static_info(spec: str, size) -> Dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    from mmvit_backbones.models.layers import naive_attention_mode
    model = _build(spec).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), naive_attention_mode(True), counter:  # explicit matmuls are counted exactly
        model(torch.randn(1, 3, *size))
    return dict(params_m=params, gflops=counter.get_total_flops() / 1e9)


def _run_isolated(spec, size, args, naive):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(spec, size, args, naive, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS, help='Type:arch entries')
    parser.add_argument('--sizes', nargs='+', default=['800x1333', '512x512'], help='HxW input sizes')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--backward', action='store_true', help='time forward+backward (training) instead')
    parser.add_argument('--compare-naive', action='store_true', help='also run textbook attention')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
    parser.add_argument('--no-flops', action='store_true', help='skip counting FLOPs (one extra forward)')
    args = parser.parse_args()
    from tqdm import tqdm

    sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes]
    jobs = [(m, s) for m in args.models for s in sizes]
    rows: List[List[str]] = []
    mode = 'fwd+bwd' if args.backward else 'fwd'
    for spec, size in tqdm(jobs, desc=f'benchmark ({args.device}, {mode}, batch {args.batch})', unit='run'):
        info = {} if args.no_flops else _static_info(spec, size)
        fast = _run_isolated(spec, size, args, naive=False)
        row = [spec, f'{size[0]}x{size[1]}', f"{info.get('params_m', float('nan')):.1f}",
               f"{info.get('gflops', float('nan')):.0f}", f"{args.batch / fast['seconds']:.2f}",
               f"{fast['peak_mb']:.0f}"]
        if args.compare_naive:
            slow = _run_isolated(spec, size, args, naive=True)
            diff = max((a - b).abs().max().item() for a, b in zip(fast['outputs'], slow['outputs']))
            row += [f"{args.batch / slow['seconds']:.2f}", f"{slow['peak_mb']:.0f}",
                    f"{slow['seconds'] / fast['seconds']:.2f}x", f'{diff:.1e}']
        rows.append(row)
    header = ['model', 'input', 'params (M)', 'GFLOPs', f'{mode} img/s', 'peak MB']
    if args.compare_naive:
        header += [f'naive {mode} img/s', 'naive peak MB', 'SDPA speed-up', 'max |diff|']
    print(f'\ndevice: {args.device}, torch {torch.__version__}, batch {args.batch}, {args.iters} timed iterations')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()

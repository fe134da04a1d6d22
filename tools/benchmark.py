#!/usr/bin/env python
"""Benchmark the backbones: throughput, peak memory, parameters and FLOPs per input size.

    python tools/benchmark.py                                   # every backbone, 800x1333 and 512x512
    python tools/benchmark.py --models PyramidTNT:s GCViT:t --sizes 512x512 --backward
    python tools/benchmark.py --models ShuntedTransformer:s --sizes 800x1333 --backward --compare-naive

Each (model, size) runs in a fresh subprocess so that peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak growth of the resident memory (sampled every 2 ms) over
the built model.
``--compare-naive`` runs the same weights with textbook attention (explicit softmax(QK^T)V instead of
``scaled_dot_product_attention``) and reports the speed ratio, the memory of both and the max output difference.
FLOPs are counted by ``torch.utils.flop_counter`` (multiply-adds x2) for one forward pass.
"""
import argparse
import multiprocessing as mp
import resource
import time
from typing import Dict, List, Optional

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
    with open('/proc/self/statm') as f:  # resident pages of this process now
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRSS:
    """Samples the resident memory every 2 ms in a thread: the CPU stand-in for max_memory_allocated."""

    def __init__(self):
        import threading
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


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
        with _PeakRSS() as rss:
            for _ in range(args.warmup):
                step()
            sync()
            start = time.perf_counter()
            for _ in range(args.iters):
                step()
            sync()
            elapsed = (time.perf_counter() - start) / args.iters
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else rss.peak - base_rss
        model.eval()
        with torch.no_grad():
            # numpy, not tensors: torch shares tensors through file descriptors that die with this process
            reference = [o.float().cpu().numpy() for o in model(x)]
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


def _run_isolated(spec, size, args, naive) -> Optional[dict]:
    """Measure in a fresh process; None when it died (e.g. killed for running out of memory)."""
    import queue as queue_module
    ctx = mp.get_context('spawn')
    results = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(spec, size, args, naive, results))
    proc.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                result = None
                break
    proc.join()
    return result


def _speed_cells(result: Optional[dict], batch: int) -> List[str]:
    if result is None:
        return ['failed', 'out of memory?']
    return [f"{batch / result['seconds']:.2f}", f"{result['peak_mb']:.0f}"]


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
        row = [spec, f'{size[0]}x{size[1]}', f"{info['params_m']:.1f}" if info else '-',
               f"{info['gflops']:.0f}" if info else '-'] + _speed_cells(fast, args.batch)
        if args.compare_naive:
            slow = _run_isolated(spec, size, args, naive=True)
            row += _speed_cells(slow, args.batch)
            if fast and slow:
                diff = max(float(abs(a - b).max()) for a, b in zip(fast['outputs'], slow['outputs']))
                row += [f"{slow['seconds'] / fast['seconds']:.2f}x", f'{diff:.1e}']
            else:
                row += ['-', '-']
        rows.append(row)
    header = ['model', 'input', 'params (M)', 'GFLOPs', f'{mode} img/s', 'peak MB']
    if args.compare_naive:
        header += [f'naive {mode} img/s', 'naive peak MB', 'SDPA speed-up', 'max abs diff']
    print(f'\ndevice: {args.device}, torch {torch.__version__}, batch {args.batch}, {args.iters} timed iterations')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()

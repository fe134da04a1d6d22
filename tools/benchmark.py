#!/usr/bin/env python
"""Benchmark the backbones: throughput, achieved GFLOP/s as a fraction of the machine's GEMM rate, peak memory.

    python tools/benchmark.py                                  # CPU: every backbone, inference, 800x1333 + 512x512
    python tools/benchmark.py --modes fwd fwd+bwd --markdown   # + training pass, as a README table
    python tools/benchmark.py --models ShuntedTransformer:s --sizes 800x1333 --modes fwd+bwd --compare-naive
    python tools/benchmark.py --device cuda --amp bf16         # GPU: inference + training step, 800x1333 x2, 512x512 x8
    python tools/benchmark.py --compile --sizes 512x512        # torch.compile(dynamic=True) against eager
    python tools/benchmark.py --models DeepViT:s:with_cp=True --modes fwd+bwd   # with backbone arguments

Modes (``--modes``): ``fwd`` inference (eval, no_grad); ``fwd+bwd`` forward + backward of the sum of the output
means (train mode; each output's gradient laid out like the output, as a neck's convolution returns it); ``step`` a
full training step (forward + backward + AdamW step; fp16 with a GradScaler).

Every row is measured in a fresh process (so that peak memory is its own and a crash or an out-of-memory kill only
loses that row). Columns:

* ``GFLOPs``: per image, for the mode (forward, or forward+backward), counted by ``torch.utils.flop_counter``
  (multiply-adds x2) with fake tensors and textbook attention (whose matmuls are counted exactly);
* ``GFLOP/s`` achieved, and ``GEMM frac``: that rate divided by the rate of a 2048x2048 ``torch.mm`` (in the compute
  dtype) measured in the same process, the median of probes right before the model and after every timed step: the
  practical ceiling of the machine, which also normalises for other load on a shared machine;
* ``peak MB``: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak growth of the resident memory (sampled
  every 2 ms during the warm-up and one more step after the timed ones: the sampler thread would slow the timed
  steps) over the built model;
* ``--compare-naive``: the same weights through textbook attention (softmax(QK^T)V instead of SDPA): speed, memory
  and max output difference;
* ``--compile``: the same row under ``torch.compile(dynamic=True)``: speed-up over eager, max output difference
  (checked against the parity tolerance ``1e-4 max|ref| + 1e-5``, 2e-2 relative under ``--amp``), the graph breaks
  (``torch._dynamo`` counters; reasons listed under the table) and the recompilations when the compiled model then
  sees ``--recompile-sizes`` (default: two odd sizes derived from the row's size).

Throughput is the median of ``--iters`` timed iterations after ``--warmup``. The backbones need only torch, timm
and mmengine here (no mmcv/mmdet), so this runs on a bare GPU machine.
"""
import argparse
import ast
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import _bootstrap  # noqa: F401
import torch

DEFAULT_MODELS = ['PyramidTNT:s', 'GCViT:t', 'ShuntedTransformer:s', 'T2TViT:14', 'PlainViT:s', 'BoTNet:50', 'TNT:s',
                  'MLPMixer:b16', 'ResMLP:24', 'CSWin:t', 'DeepViT:s']
MODES = ('fwd', 'fwd+bwd', 'step')
AMP_DTYPES = {None: None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
DEFAULT_SIZES = ['800x1333', '512x512']  # detection and segmentation inputs
# CUDA batch sizes of the default rows: a typical per-GPU detection batch, a larger one for segmentation crops
CUDA_DEFAULT_BATCH = {(800, 1333): 2, (512, 512): 8}
Size2d = Tuple[int, int]


def _build(spec: str) -> torch.nn.Module:
    """``Type[:arch[:key=value,...]]``, e.g. ``DeepViT:s:with_cp=True,norm_eval=True`` (values as Python
    literals, strings as they are)."""
    from mmengine.registry import MODELS

    import mmvit_backbones  # noqa: F401
    type_name, _, rest = spec.partition(':')
    arch, _, extra = rest.partition(':')
    kwargs = dict(type=type_name)
    if arch:
        kwargs['arch'] = arch
    for item in filter(None, re.split(r',(?=\s*\w+=)', extra)):  # commas inside (1, 3) stay
        key, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f'benchmark: {item!r} in {spec!r} is not key=value (e.g. DeepViT:s:with_cp=True)')
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return MODELS.build(kwargs)


def _parse_size(text: str) -> Size2d:
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise SystemExit(f'benchmark: sizes are HxW, e.g. 800x1333; got {text!r}') from None
    return h, w


# ------------------------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                min_seconds: float = 0.3) -> float:
    """Rate of an ``n x n`` ``torch.mm`` in GFLOP/s (best of 3 timings of at least ``min_seconds``)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    _sync(device)
    best = float('inf')
    for _ in range(3):
        reps, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            reps += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / reps)
    return 2 * n ** 3 / best / 1e9


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


class Runner:
    """One benchmark configuration on one model: builds the step function of a mode and times it."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, mode: str, amp: Optional[str] = None):
        if mode not in MODES:
            raise ValueError(f'benchmark: mode must be one of {MODES}, got {mode!r}')
        self.model, self.x, self.mode = model, x, mode
        self.device = x.device
        self.amp_dtype = AMP_DTYPES[amp]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if mode == 'step' else None
        # fp16 gradients underflow without loss scaling (bf16 has float32's range)
        self.scaler = torch.amp.GradScaler(self.device.type) if mode == 'step' and amp == 'fp16' else None
        model.train(mode != 'fwd')

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def step(self, net: Optional[torch.nn.Module] = None) -> Sequence[torch.Tensor]:
        net = self.model if net is None else net
        if self.mode == 'fwd':
            with torch.no_grad(), self.autocast():
                return net(self.x)
        with self.autocast():
            outs = net(self.x)
        # backward of the sum of the outputs' means, with each gradient laid out like its output: a detector's neck
        # (a convolution) hands a channels-last map a channels-last gradient, while `o.mean().backward()` would hand
        # it a contiguous one and add layout conversions to the backbone's backward that no detector causes
        grads = [torch.full_like(o, 1.0 / o.numel()) for o in outs]
        torch.autograd.backward(outs, self.scaler.scale(grads) if self.scaler else grads)
        if self.optimizer is not None:
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        for p in self.model.parameters():  # fresh gradients every iteration, also without an optimizer
            p.grad = None
        return outs

    def time(self, net: Optional[torch.nn.Module], warmup: int, iters: int,
             between: Optional[Callable[[], None]] = None) -> float:
        """Median seconds per step; ``between`` (untimed) runs after every timed step."""
        for _ in range(warmup):
            self.step(net)
        _sync(self.device)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            self.step(net)
            _sync(self.device)
            times.append(time.perf_counter() - start)
            if between is not None:
                between()
        return statistics.median(times)

    def time_and_peak(self, warmup: int, iters: int,
                      between: Optional[Callable[[], None]] = None) -> Tuple[float, float]:
        """Median seconds per step (:meth:`time`) and the peak memory of a step in MB: ``max_memory_allocated`` on
        CUDA; on CPU the peak growth of the resident memory over what it was before the warm-up, sampled during the
        warm-up and in one extra step after the timed ones. The sampler thread wakes every 2 ms; on a machine with as
        many cores as compute threads it preempts one of them and stalls every parallel region (DeepViT-S at
        800x1333, 2 threads on 2 cores: 10-25% slower), so it never runs while steps are timed."""
        base_rss = _rss_mb()
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
        with _PeakRSS() as warmup_rss:  # untimed: one-time allocations (caches) of the first steps count too
            for _ in range(warmup):
                self.step()
            _sync(self.device)
        seconds = self.time(None, 0, iters, between)
        if self.device.type == 'cuda':
            return seconds, torch.cuda.max_memory_allocated(self.device) / 2**20
        with _PeakRSS() as rss:
            self.step()
        return seconds, max(warmup_rss.peak, rss.peak) - base_rss

    def outputs(self, net: Optional[torch.nn.Module] = None) -> List[torch.Tensor]:
        """Eval-mode outputs (float32, CPU) for comparisons."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast():
                return [o.float().cpu() for o in (self.model if net is None else net)(self.x)]
        finally:
            self.model.train(training)


def max_rel_diff(ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor]) -> Tuple[float, bool]:
    """Largest ``max|out - ref|`` over the outputs, and whether every output is within the parity tolerance."""
    worst, ok = 0.0, len(ref) == len(out)
    for r, o in zip(ref, out):
        diff = float((r - o).abs().max()) if r.numel() else 0.0
        worst = max(worst, diff)
        ok = ok and r.shape == o.shape and diff <= 1e-4 * float(r.abs().max() if r.numel() else 0) + 1e-5
    return worst, ok


def compile_check(runner: Runner, warmup: int, iters: int, backend: str,
                  other_sizes: Sequence[Size2d], amp: bool) -> dict:
    """Time ``torch.compile(model, dynamic=True)``, compare it with eager and count graph breaks/recompilations."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    if runner.mode != 'fwd':  # a compiled backward with dynamic shapes needs it (mmvit_backbones/engine/compile.py)
        from mmvit_backbones.engine import enable_dynamic_shape_training
        enable_dynamic_shape_training()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(runner.model, dynamic=True, backend=backend)
    start = time.perf_counter()
    runner.step(compiled)  # compiles
    _sync(runner.device)
    compile_seconds = time.perf_counter() - start
    seconds = runner.time(compiled, warmup, iters)
    reference = runner.outputs()
    got = runner.outputs(compiled)  # eval/no_grad: may compile once more for the mode change (not a size change)
    if amp:
        diff = max(float((r - o).abs().max()) for r, o in zip(reference, got))
        ok = all(float((r - o).abs().max()) <= 2e-2 * float(r.abs().max()) + 1e-3 for r, o in zip(reference, got))
    else:
        diff, ok = max_rel_diff(reference, got)
    graphs = counters['stats']['unique_graphs']
    x = runner.x
    runner.model.eval()
    with torch.no_grad(), runner.autocast():
        for size in other_sizes:
            compiled(torch.randn(x.shape[0], x.shape[1], *size, device=x.device))
    runner.model.train(runner.mode != 'fwd')
    recompiles = counters['stats']['unique_graphs'] - graphs
    return dict(seconds=seconds, compile_seconds=compile_seconds, max_diff=diff, ok=ok, recompiles=recompiles,
                graph_breaks=dict(counters['graph_break']))


def _measure(spec: str, size: Size2d, batch: int, mode: str, args, naive: bool) -> dict:
    from mmvit_backbones.models.layers import naive_attention_mode
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = _build(spec).to(device)
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    runner = Runner(model, x, mode, args.amp)
    # the ceiling, in the same process and under the same load: the median of probes right before the model and
    # after every timed step (on a shared machine the load drifts within seconds: one probe read 111-173 GFLOP/s)
    dtype = AMP_DTYPES[args.amp] or torch.float32
    probes = [gemm_gflops(device, dtype)]
    result = {}
    with naive_attention_mode(naive):
        if args.compare_naive:  # before any training step changes the weights
            # numpy, not tensors: torch shares tensors through file descriptors that die with this process
            result['outputs'] = [o.numpy() for o in runner.outputs()]
        result['seconds'], result['peak_mb'] = runner.time_and_peak(
            args.warmup, args.iters, between=lambda: probes.append(gemm_gflops(device, dtype, min_seconds=0.1)))
    result['gemm_gflops'] = statistics.median(probes)
    if args.compile and not naive:
        other = args.recompile_sizes
        if other is None:
            other = [(size[0] // 2 + 7, size[1] // 2 + 13), (size[0] // 2 + 19, size[1] // 2 + 3)]
        result['compile'] = compile_check(runner, args.warmup, args.iters, args.compile_backend, other,
                                          amp=args.amp is not None)
    return result


def _worker(spec, size, batch, mode, args, naive, queue) -> None:
    try:
        queue.put(_measure(spec, size, batch, mode, args, naive))
    except Exception as err:  # reported in the row instead of a traceback from a child process
        import traceback
        traceback.print_exc()
        queue.put(dict(error=f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'[:120]))


def run_isolated(worker, *worker_args) -> dict:
    """``worker(*worker_args, queue)`` in a fresh process, which puts one result dict on the queue; an ``error``
    entry when the process died without one (e.g. killed for memory)."""
    import queue as queue_module
    ctx = mp.get_context('spawn')
    results = ctx.Queue()
    proc = ctx.Process(target=worker, args=(*worker_args, results))
    proc.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                result = dict(error=f'process died (exit code {proc.exitcode}; out of memory?)')
                break
    proc.join()
    return result


def _run_isolated(spec, size, batch, mode, args, naive) -> dict:
    """Measure in a fresh process (its own peak memory; a crash or an out-of-memory kill only loses this row)."""
    return run_isolated(_worker, spec, size, batch, mode, args, naive)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each gradient of a convolution (input, weight) costs what its forward costs. (torch's own formula ignores
    ``groups`` for the weight gradient: it counts a depthwise conv's backward as a dense one, ~60x too much.)"""
    from torch.utils.flop_counter import conv_flop_count
    return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(spec: str, size: Size2d, backward: bool) -> Tuple[float, float]:
    """(parameters in M, GFLOPs of one image's forward or forward+backward).

    Counted with fake tensors (shapes only: no memory, no compute) and textbook attention, whose matmuls
    ``FlopCounterMode`` counts exactly."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from mmvit_backbones.models.layers import naive_attention_mode
    model = _build(spec).train(backward)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: _conv_backward_flops})
    with FakeTensorMode(allow_non_fake_inputs=True), naive_attention_mode(True), counter, \
            torch.set_grad_enabled(backward):
        outs = model(torch.randn(1, 3, *size))
        if backward:
            sum(o.float().mean() for o in outs).backward()
    return params, counter.get_total_flops() / 1e9


# ----------------------------------------------------------------------------------------------------- reporting
_ALLOCATORS = ('tcmalloc', 'jemalloc', 'mimalloc')


def cpu_allocator() -> str:
    """The malloc this process runs on: a preloaded tcmalloc/jemalloc/mimalloc (``LD_PRELOAD``), else the C
    library's. It matters on CPU: glibc hands large freed blocks back to the kernel, so every step faults its maps in
    again (README, "CPU memory allocator")."""
    try:
        with open('/proc/self/maps') as f:
            libraries = {line.rsplit('/', 1)[-1].strip() for line in f if '.so' in line}
    except OSError:  # not Linux
        return 'system malloc'
    for name in _ALLOCATORS:
        if any(lib.startswith(('lib' + name, name)) for lib in libraries):
            return name
    return 'glibc malloc' if platform.libc_ver()[0] == 'glibc' else 'system malloc'


def machine_line(args, gemm: float) -> str:
    if args.device.startswith('cuda'):
        device = torch.cuda.get_device_name(torch.device(args.device))
    else:
        model_name = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                model_name = next(ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name'))
        except (OSError, StopIteration):
            pass
        device = f'{model_name}, {os.cpu_count()} logical CPUs'
    threads = args.threads or torch.get_num_threads()
    dtype = args.amp or 'float32'
    return (f'{device}; torch {torch.__version__}, {threads} CPU threads, {cpu_allocator()}; {dtype}; '
            f'GEMM 2048x2048 {dtype}: {gemm:.0f} GFLOP/s (this process, start of the run)')


def print_table(header: List[str], rows: List[List[str]], markdown: bool, numeric) -> None:
    """Markdown (for the README) or aligned text; ``numeric(column)`` columns are right-aligned in text."""
    if markdown:
        print('\n| ' + ' | '.join(header) + ' |')
        print('|' + '---|' * len(header))
        for row in rows:
            print('| ' + ' | '.join(row) + ' |')
        return
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print('  '.join(cell.rjust(w) if numeric(i) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def _fmt(value: Optional[float], spec: str) -> str:
    return '-' if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS,
                        help='Type:arch entries, optionally with backbone arguments: Type:arch:with_cp=True,...')
    parser.add_argument('--sizes', nargs='+', help='HxW input sizes (default 800x1333 512x512)')
    parser.add_argument('--batch-size', '--batch', type=int,
                        help='images per batch (default: 1 on CPU; on CUDA 2 at 800x1333, 8 at 512x512, else 1)')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        help='fwd (inference), fwd+bwd, step (fwd+bwd+AdamW); default: fwd on CPU, fwd step on CUDA')
    parser.add_argument('--backward', action='store_true', help='same as --modes fwd+bwd')
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', choices=['bf16', 'fp16'], help='autocast dtype (default: float32 throughout)')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
    parser.add_argument('--compare-naive', action='store_true', help='also run textbook attention')
    parser.add_argument('--compile', action='store_true', help='also run torch.compile(dynamic=True)')
    parser.add_argument('--compile-backend', default='inductor', help="torch.compile backend ('eager' and "
                        "'aot_eager' only trace: quick graph-break/recompilation counts)")
    parser.add_argument('--recompile-sizes', nargs='*', type=_parse_size,
                        help='sizes shown to the compiled model after timing, to count recompilations (none: '
                        'skip; default: two odd sizes derived from the row\'s size)')
    parser.add_argument('--no-flops', action='store_true', help='skip counting FLOPs')
    parser.add_argument('--markdown', action='store_true', help='print the table as Markdown (for the README)')
    args = parser.parse_args()
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        raise SystemExit('benchmark: --device cuda, but torch sees no CUDA device (torch.cuda.is_available() is '
                         'False); run on a GPU machine with a CUDA build of torch, or use --device cpu')
    modes = args.modes or (['fwd+bwd'] if args.backward else ['fwd', 'step'] if cuda else ['fwd'])
    sizes = [_parse_size(s) for s in args.sizes or DEFAULT_SIZES]
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    gemm = gemm_gflops(torch.device(args.device), AMP_DTYPES[args.amp] or torch.float32)
    jobs = [(m, s, mode) for m in args.models for s in sizes for mode in modes]
    flops_cache: Dict[Tuple[str, Size2d, bool], Tuple[float, float]] = {}
    header = ['model', 'input', 'batch', 'mode', 'params (M)', 'GFLOPs/img', 'img/s', 'GFLOP/s', 'GEMM frac',
              'peak MB']
    if args.compare_naive:
        header += ['naive img/s', 'naive peak MB', 'SDPA speed-up', 'max abs diff']
    if args.compile:
        header += ['compiled img/s', 'compile speed-up', 'compiled max diff', 'graph breaks', 'recompiles']
    rows, notes = [], []
    for spec, size, mode in tqdm(jobs, desc=f'benchmark ({args.device})', unit='row', file=sys.stderr):
        batch = args.batch_size or (CUDA_DEFAULT_BATCH.get(size, 1) if cuda else 1)
        backward = mode != 'fwd'
        key = (spec, size, backward)
        if not args.no_flops and key not in flops_cache:
            try:
                flops_cache[key] = count_flops(spec, size, backward)
            except Exception as err:  # a model that cannot run on meta: report it, keep benchmarking
                notes.append(f'{spec} {size}: FLOPs not counted ({type(err).__name__}: {err})')
                flops_cache[key] = (None, None)
        params, gflops = flops_cache.get(key, (None, None))
        fast = _run_isolated(spec, size, batch, mode, args, naive=False)
        row = [spec, f'{size[0]}x{size[1]}', str(batch), mode, _fmt(params, '.1f'), _fmt(gflops, '.0f')]
        if 'error' in fast:
            row += ['failed', '-', '-', fast['error']]
        else:
            rate = gflops * batch / fast['seconds'] if gflops else None
            row += [f"{batch / fast['seconds']:.2f}", _fmt(rate, '.0f'),
                    _fmt(rate / fast['gemm_gflops'] if rate else None, '.2f'), f"{fast['peak_mb']:.0f}"]
        if args.compare_naive:
            slow = _run_isolated(spec, size, batch, mode, args, naive=True)
            if 'error' in slow:
                row += ['failed', slow['error'], '-', '-']
            else:
                row += [f"{batch / slow['seconds']:.2f}", f"{slow['peak_mb']:.0f}"]
                if 'error' not in fast:
                    diff = max(float(abs(a - b).max()) for a, b in zip(fast['outputs'], slow['outputs']))
                    row += [f"{slow['seconds'] / fast['seconds']:.2f}x", f'{diff:.1e}']
                else:
                    row += ['-', '-']
        if args.compile:
            comp = fast.get('compile')
            if comp is None:
                row += ['-'] * 5
            else:
                breaks = sum(comp['graph_breaks'].values())
                row += [f"{batch / comp['seconds']:.2f}", f"{fast['seconds'] / comp['seconds']:.2f}x",
                        f"{comp['max_diff']:.1e}" + ('' if comp['ok'] else ' MISMATCH'), str(breaks),
                        str(comp['recompiles']) if args.recompile_sizes != [] else '-']
                for reason, n in comp['graph_breaks'].items():
                    notes.append(f'{spec} {mode}: graph break x{n}: {reason[:200]}')
                notes.append(f"{spec} {size[0]}x{size[1]} {mode}: first compiled call {comp['compile_seconds']:.0f} s")
        rows.append(row)
        tqdm.write('| ' + ' | '.join(row) + ' |', file=sys.stderr)  # progress: each row as soon as it is measured

    print(f'\n{machine_line(args, gemm)}; {args.iters} timed iterations (median) after {args.warmup} warm-up')
    print_table(header, rows, args.markdown, numeric=lambda i: i > 3)
    for note in notes:
        print(f'* {note}')


if __name__ == '__main__':
    main()

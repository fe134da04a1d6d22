#!/usr/bin/env python
"""Time our backbones side by side with the official implementations: same weights, same input, float32, batch 1.

    python dev/benchmark_official.py --official-root /tmp/official                      # native sizes, fwd + fwd+bwd
    python dev/benchmark_official.py --official-root /tmp/official --markdown           # as a README table
    python dev/benchmark_official.py --official-root /tmp/official --pairs shunted dino --size 800x1333
    python dev/benchmark_official.py --official-root /tmp/official --threads 1 --iters 1 --warmup 0 --repeats 1

Pairs (``--pairs`` name: official model, file, factory -> ours as the registry builds it with
``MODELS.build(dict(type=..., arch=...))``; native input size):

* ``pyramidtnt``: PyramidTNT-S, huawei-noah/Efficient-AI-Backbones ``tnt_pytorch/pyramid_tnt.py``
  ``ptnt_s_patch16_256`` -> ``PyramidTNT:s``; 256x256
* ``gcvit``: GC ViT-T, NVlabs/GCVit ``models/gc_vit.py`` ``gc_vit_tiny`` -> ``GCViT:t``; 224x224
* ``shunted``: Shunted-S, OliverRensu/Shunted-Transformer ``SSA.py`` ``shunted_s`` -> ``ShuntedTransformer:s``; 224x224
* ``t2t``: T2T-ViT-14, yitu-opensource/T2T-ViT ``models/t2t_vit.py`` ``t2t_vit_14`` -> ``T2TViT:14``; 224x224
* ``dino``: DINO ViT-S/16, facebookresearch/dino ``vision_transformer.py`` ``vit_small(patch_size=16)`` ->
  ``PlainViT:s``; 224x224
* ``botnet``: BoTNet-26t, the installed timm's ``botnet26t_256`` -> ``BoTNet:26t``; 256x256

Official code is imported, never copied: ``--official-root`` holds one folder per GitHub repository, named like the
repository (tested at the commits of the parity fixtures in ``tests/data/parity``)::

    OFFICIAL_ROOT/
      Efficient-AI-Backbones/tnt_pytorch/pyramid_tnt.py     # huawei-noah/Efficient-AI-Backbones@f90e129
      GCVit/models/gc_vit.py                                # NVlabs/GCVit@8e1941f
      Shunted-Transformer/SSA.py                            # OliverRensu/Shunted-Transformer@6861101
      T2T-ViT/models/{t2t_vit,token_performer,token_transformer,transformer_block}.py  # yitu-opensource/T2T-ViT@0f63dc9
      dino/{vision_transformer,utils}.py                    # facebookresearch/dino@7c446df

(a full ``git clone`` of each repository works as well; BoTNet comes from the installed timm). The official files
import with timm 1.0.x as they are (old ``timm.models.layers``/``registry``/``helpers`` paths only warn). One import
detail is handled here, without editing any official file: T2T-ViT's ``models/`` is imported as a package whose
``__init__.py`` is not run (it also imports ``vit.py``, which needs a timm helper removed in 1.0, and the other T2T
variants), so that ``t2t_vit.py``'s relative imports resolve.

Weights: the official model is built without classifier (``num_classes=0``) and without stochastic depth; its
state-dict layout is filled by the project's documented rule
(:func:`mmvit_backbones.testing.parity.official_state_dict`) and loaded into it, and the same official-layout dict
goes into ours through the converter, exactly as a downloaded checkpoint
(:func:`mmvit_backbones.checkpoint.load_pretrained`). Before timing, a parity check at the native size compares our
map that corresponds to the official final feature map (the last stage, before the classifier's norm and pooling where
the official model has them) with the tolerance ``1e-4 max|ref| + 1e-5``; the rows of a pair that fails say MISMATCH.

Modes (``--modes``): ``fwd`` inference (eval, no_grad); ``fwd+bwd`` forward + backward of the sum of the output means
(train mode; each gradient laid out like its output, as in tools/benchmark.py): the official model's output is its
pooled, classifier-free feature, ours the backbone outputs.
Every measurement runs in a fresh process (its own peak memory; a crash only loses that measurement); each round
runs the official model and ours one after the other (the order flips every round, so a slow drift of the machine
hits both alike), ``--repeats`` rounds. A process does ``--warmup`` + ``--iters`` iterations and reports the median;
the table shows the median over the rounds. ``peak MB``: on CPU the peak growth of the resident memory (sampled
every 2 ms, tools/benchmark.py's sampler) over the built model with its weights; on CUDA
``torch.cuda.max_memory_allocated``. ``official/ours`` > 1: ours is faster.

By default ours is what the registry builds, i.e. with its dense-prediction outputs, which the official classifier
does not compute (PyramidTNT's x2 upsampling adapters, the simple feature pyramid of PlainViT and T2T-ViT, GC ViT's
per-output norms, the three earlier levels of the pyramids, whose gradients a classifier never back-propagates).
``--no-adapters`` builds ours without them (see ``lean_kwargs`` below), so both sides compute the same network.

``--size HxW`` times every selected pair at that size instead of its native one (parity is still checked at the
native size; where both models run, the final maps at the new size are compared too, for information: ours pads
where the official code crops or floors). Where the official code fails at a size the row says
``official crashes: <ExceptionType: message>``.
"""
import argparse
import contextlib
import gc
import importlib
import importlib.util
import math
import os
import statistics
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Tuple

import _bootstrap  # noqa: F401  (puts the repository root and tools/ on sys.path)
import benchmark as bench  # tools/benchmark.py: Runner, the peak-memory sampler, the GEMM probe, the machine line
import numpy as np
import torch
import torch.nn as nn

from mmvit_backbones.models.layers import tokens_to_map

Size2d = Tuple[int, int]
Tensor = torch.Tensor
MODES = ('fwd', 'fwd+bwd')


# ------------------------------------------------------------------------------------------- importing official code
def _official_file(root: str, repo: str, relpath: str, github: str) -> str:
    path = os.path.join(root, repo, relpath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'official code not found: {path} (expected --official-root/{repo}/{relpath}, from '
                                f'https://github.com/{github})')
    return path


def _load_file(module_name: str, path: str) -> types.ModuleType:
    """Import one official file under a name of our own (no clash with another repository's ``models``...)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # timm's register_model looks its module up here
    spec.loader.exec_module(module)
    return module


def _load_from_package(package_name: str, package_dir: str, module: str) -> types.ModuleType:
    """Import ``package_dir/module.py`` as ``package_name.module`` so that its relative imports resolve, without
    running the package's ``__init__.py`` (import shim: an empty package module in ``sys.modules``)."""
    if package_name not in sys.modules:
        package = types.ModuleType(package_name)
        package.__path__ = [package_dir]
        sys.modules[package_name] = package
    return importlib.import_module(f'{package_name}.{module}')


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation warnings of old timm paths and the prints of official constructors (T2T-ViT's
    "adopt performer encoder...") while models are built and run; errors still propagate."""
    with warnings.catch_warnings(), open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
        warnings.simplefilter('ignore')
        yield


# ------------------------------------------------------------------------------------------------ official builders
def _official_pyramid_tnt(root: str) -> nn.Module:
    module = _load_file('official_pyramid_tnt', _official_file(
        root, 'Efficient-AI-Backbones', 'tnt_pytorch/pyramid_tnt.py', 'huawei-noah/Efficient-AI-Backbones'))
    return module.ptnt_s_patch16_256(num_classes=0, drop_path_rate=0.0)


def _official_gcvit(root: str) -> nn.Module:
    module = _load_file('official_gc_vit', _official_file(root, 'GCVit', 'models/gc_vit.py', 'NVlabs/GCVit'))
    return module.gc_vit_tiny(num_classes=0, drop_path_rate=0.0)  # (its factory's default drop_path_rate is 0.2)


def _official_shunted(root: str) -> nn.Module:
    module = _load_file('official_shunted', _official_file(
        root, 'Shunted-Transformer', 'SSA.py', 'OliverRensu/Shunted-Transformer'))
    return module.shunted_s(num_classes=0, drop_path_rate=0.0)


def _official_t2t(root: str) -> nn.Module:
    path = _official_file(root, 'T2T-ViT', 'models/t2t_vit.py', 'yitu-opensource/T2T-ViT')
    module = _load_from_package('official_t2t_models', os.path.dirname(path), 't2t_vit')
    return module.t2t_vit_14(num_classes=0, drop_path_rate=0.0)


def _official_dino(root: str) -> nn.Module:
    path = _official_file(root, 'dino', 'vision_transformer.py', 'facebookresearch/dino')
    # vision_transformer.py does `from utils import trunc_normal_`: DINO's own utils.py, found through sys.path
    sys.path.insert(0, os.path.dirname(path))
    sys.modules.pop('utils', None)
    try:
        module = _load_file('official_dino_vit', path)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module.vit_small(patch_size=16, num_classes=0, drop_path_rate=0.0)


def _official_botnet(_root: str) -> nn.Module:
    import timm
    return timm.create_model('botnet26t_256', pretrained=False, num_classes=0, drop_rate=0.0, drop_path_rate=0.0)


# -------------------------------------------------------------------------------------------------- final maps
def _hooked(net: nn.Module, x: Tensor, hooks: Dict[str, Tuple[nn.Module, Callable]]) -> Dict[str, Any]:
    """Run ``net(x)`` and return ``{name: take(args, kwargs, output)}`` of each hooked module's last call."""
    got: Dict[str, Any] = {}
    handles = [module.register_forward_hook(
        lambda _m, args, kwargs, out, name=name, take=take: got.__setitem__(name, take(args, kwargs, out)),
        with_kwargs=True) for name, (module, take) in hooks.items()]
    try:
        net(x)
    finally:
        for handle in handles:
            handle.remove()
    return got


def _tokens_to_map(tokens: Tensor, hw: Size2d) -> Tensor:
    """(B, h*w, C) row-major tokens -> (B, C, h, w); ``hw`` as the official code hands it (ints or 0-d tensors)."""
    return tokens_to_map(tokens, (int(hw[0]), int(hw[1])))


def _official_pyramid_tnt_final(net: nn.Module, x: Tensor) -> Tensor:
    # stages[3](inner, outer, H_out, W_out, H_in, W_in) -> (inner, outer): the un-normalised sentence tokens
    got = _hooked(net, x, {'out': (net.stages[3], lambda a, k, o: (o[1], (a[2], a[3])))})
    return _tokens_to_map(*got['out'])


def _ours_pyramid_tnt_final(model: nn.Module, x: Tensor) -> Tensor:
    # the last block of stage 3 returns (words, sentences) on the grid passed as hw=; the stage output before the
    # (optional) upsampling adapter, cropped like our native-stride output
    got = _hooked(model, x, {'out': (model.stages[3].blocks[-1], lambda a, k, o: (o[1], k['hw']))})
    h, w = x.shape[-2:]
    return _tokens_to_map(*got['out'])[..., :math.ceil(h / 64), :math.ceil(w / 64)]


def _official_gcvit_final(net: nn.Module, x: Tensor) -> Tensor:
    return _hooked(net, x, {'out': (net.levels[3], lambda a, k, o: o)})['out'].permute(0, 3, 1, 2)  # NHWC -> NCHW


def _ours_gcvit_final(model: nn.Module, x: Tensor) -> Tensor:
    return model.forward_levels(x)[3].permute(0, 3, 1, 2)  # before our new per-output norms


def _official_shunted_final(net: nn.Module, x: Tensor) -> Tensor:
    got = _hooked(net, x, {'hw': (net.patch_embed4, lambda a, k, o: (o[1], o[2])),  # (tokens, H, W)
                           'out': (net.norm4, lambda a, k, o: o)})
    return _tokens_to_map(got['out'], got['hw'])


def _ours_stage3(model: nn.Module, x: Tensor) -> Tensor:
    return dict(zip(model.out_indices, model(x)))[3]


def _official_t2t_final(net: nn.Module, x: Tensor) -> Tensor:
    grid = []
    for size in x.shape[-2:]:  # the three soft splits: unfold 7/4 pad 2, 3/2 pad 1, 3/2 pad 1
        size = (size + 4 - 7) // 4 + 1
        for _ in range(2):
            size = (size + 2 - 3) // 2 + 1
        grid.append(size)
    return _tokens_to_map(_hooked(net, x, {'out': (net.norm, lambda a, k, o: o[:, 1:])})['out'], grid)


def _ours_t2t_final(model: nn.Module, x: Tensor) -> Tensor:
    return model.forward_intermediates(x, official_grid=True)['feature']


def _official_dino_final(net: nn.Module, x: Tensor) -> Tensor:
    patch = net.patch_embed.patch_size  # DINO's patch conv drops the remainder pixels: floor
    tokens = _hooked(net, x, {'out': (net.norm, lambda a, k, o: o[:, 1:])})['out']
    return _tokens_to_map(tokens, (x.shape[-2] // patch, x.shape[-1] // patch))


def _ours_plain_vit_final(model: nn.Module, x: Tensor) -> Tensor:
    p = model.patch_size  # we pad to whole patches: ceil
    tokens = _hooked(model, x, {'out': (model.norm, lambda a, k, o: o[:, 1:])})['out']
    return _tokens_to_map(tokens, (math.ceil(x.shape[-2] / p), math.ceil(x.shape[-1] / p)))


def _official_botnet_final(net: nn.Module, x: Tensor) -> Tensor:
    return _hooked(net, x, {'out': (net.stages[3], lambda a, k, o: o)})['out']


# ------------------------------------------------------------------------------------------------------- the pairs
@dataclass(frozen=True)
class Pair:
    name: str  # --pairs key
    label: str
    source: str  # official file and factory, for the report
    native: Size2d
    ours: str  # registry Type:arch
    build_official: Callable[[str], nn.Module]
    official_final: Callable[[nn.Module, Tensor], Tensor]
    ours_final: Callable[[nn.Module, Tensor], Tensor]
    # --no-adapters: arguments that drop our dense-prediction adapters the official classifier does not have
    lean_kwargs: Dict[str, Any] = field(default_factory=dict)


PAIRS: Dict[str, Pair] = {p.name: p for p in (
    Pair('pyramidtnt', 'PyramidTNT-S', 'Efficient-AI-Backbones tnt_pytorch/pyramid_tnt.py ptnt_s_patch16_256',
         (256, 256), 'PyramidTNT:s', _official_pyramid_tnt, _official_pyramid_tnt_final, _ours_pyramid_tnt_final,
         dict(native_strides=True, out_indices=(3, ))),
    Pair('gcvit', 'GC ViT-T', 'GCVit models/gc_vit.py gc_vit_tiny', (224, 224), 'GCViT:t', _official_gcvit,
         _official_gcvit_final, _ours_gcvit_final, dict(out_indices=(3, ))),
    Pair('shunted', 'Shunted-S', 'Shunted-Transformer SSA.py shunted_s', (224, 224), 'ShuntedTransformer:s',
         _official_shunted, _official_shunted_final, _ours_stage3, dict(out_indices=(3, ))),
    Pair('t2t', 'T2T-ViT-14', 'T2T-ViT models/t2t_vit.py t2t_vit_14', (224, 224), 'T2TViT:14', _official_t2t,
         _official_t2t_final, _ours_t2t_final, dict(out_indices=(2, ))),
    Pair('dino', 'DINO ViT-S/16', 'dino vision_transformer.py vit_small(patch_size=16)', (224, 224), 'PlainViT:s',
         _official_dino, _official_dino_final, _ours_plain_vit_final, dict(out_indices=(2, ))),
    Pair('botnet', 'BoTNet-26t', 'timm botnet26t_256', (256, 256), 'BoTNet:26t', _official_botnet,
         _official_botnet_final, _ours_stage3, dict(out_indices=(3, ))),
)}


def _ours_kwargs(pair: Pair, no_adapters: bool) -> Dict[str, Any]:
    type_name, _, arch = pair.ours.partition(':')
    return dict(type=type_name, arch=arch, **(pair.lean_kwargs if no_adapters else {}))


def _ours_label(pair: Pair, no_adapters: bool) -> str:
    extra = pair.lean_kwargs if no_adapters else {}
    return pair.ours + (' (' + ', '.join(f'{k}={v}' for k, v in extra.items()) + ')' if extra else '')


# ------------------------------------------------------------------------------------------------ building, weights
class _AsTuple(nn.Module):
    """The official classifier (``num_classes=0``: its pooled feature) returning a tuple, as Runner expects."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        return (self.net(x), )


def _layout(net: nn.Module) -> dict:
    """The official state-dict layout in the parity-fixture format (integer buffers as numpy: they cross processes)."""
    state = net.state_dict()
    return dict(keys=[[k, list(v.shape), str(v.dtype)] for k, v in state.items()],
                int_buffers={k: v.numpy().copy() for k, v in state.items()
                             if not (v.dtype.is_floating_point or v.dtype.is_complex)})


def _official_weights(layout: dict) -> Dict[str, Tensor]:
    from mmvit_backbones.testing.parity import official_state_dict
    return official_state_dict(dict(keys=layout['keys'],
                                    int_buffers={k: torch.from_numpy(v) for k, v in layout['int_buffers'].items()}))


def _build_ours(pair: Pair, no_adapters: bool, weights: Dict[str, Tensor]):
    from mmengine.registry import MODELS

    import mmvit_backbones  # noqa: F401  (registers the backbones)
    from mmvit_backbones.checkpoint import load_pretrained
    model = MODELS.build(_ours_kwargs(pair, no_adapters))
    report = load_pretrained(model, weights, logger='silent')  # the converter, as for a downloaded checkpoint
    return model, report


def _input(size: Size2d) -> Tensor:
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))


def _release_memory() -> None:
    """Hand freed heap memory back to the OS before the resident baseline is taken (the filled weights were a
    float64 draw), so the growth measured is the run's own."""
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)


# ---------------------------------------------------------------------------------------------------- the jobs
def _parity_job(job: dict) -> dict:
    """Build both models, fill and load the same weights, compare the final maps at the native size."""
    from mmvit_backbones.testing.parity import tolerance
    pair, args = PAIRS[job['pair']], job['args']
    with _quiet():
        official = pair.build_official(args.official_root)
    layout = _layout(official)
    weights = _official_weights(layout)
    official.load_state_dict(weights, strict=True)
    with _quiet():
        ours, report = _build_ours(pair, args.no_adapters, weights)
    official.eval()
    ours.eval()
    x = _input(pair.native)
    with torch.no_grad(), _quiet():
        ref = pair.official_final(official, x).float()
        out = pair.ours_final(ours, x).float()
    result = dict(layout=layout, missing=list(report.missing), unexpected=list(report.unexpected),
                  ref_shape=tuple(ref.shape), out_shape=tuple(out.shape))
    if ref.shape == out.shape:
        result.update(diff=float((ref - out).abs().max()), tol=tolerance(ref))
    return result


def _time_job(job: dict) -> dict:
    """One model, one mode, one size: ``--warmup`` + ``--iters`` timed steps, median seconds and peak memory."""
    pair, args, side = PAIRS[job['pair']], job['args'], job['side']
    torch.manual_seed(0)
    device = torch.device(args.device)
    weights = _official_weights(job['layout'])
    with _quiet():
        if side == 'official':
            net = pair.build_official(args.official_root)
            net.load_state_dict(weights, strict=True)
            model: nn.Module = _AsTuple(net)
        else:
            net, _ = _build_ours(pair, args.no_adapters, weights)
            model = net
    del weights
    model.to(device)
    x = _input(job['size']).to(device)
    runner = bench.Runner(model, x, job['mode'])
    result: Dict[str, Any] = {}
    if job['want_output']:  # the final map at a non-native size (numpy: torch tensors die with this process)
        final = pair.official_final if side == 'official' else pair.ours_final
        model.eval()
        with torch.no_grad(), _quiet():
            result['final'] = final(net, x).float().cpu().numpy()
        model.train(job['mode'] != 'fwd')
    _release_memory()
    with _quiet():
        result['seconds'], result['peak_mb'] = runner.time_and_peak(args.warmup, args.iters)
    return result


def _short_error(err: BaseException) -> str:
    """``Type: first line of the message``; a bare ``assert`` has none, so its source line and place stand in."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ''
    if not message:
        import traceback
        torch_dir = os.path.dirname(torch.__file__)  # torch._assert raises inside torch: name its caller
        frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(torch_dir)]
        if frames:
            frame = frames[-1]
            message = f'{frame.line} ({os.path.basename(frame.filename)}:{frame.lineno})'
    return f'{type(err).__name__}: {message}'[:300]


def _worker(job: dict, results) -> None:
    try:
        if job['args'].threads:
            torch.set_num_threads(job['args'].threads)
        results.put(_parity_job(job) if job['kind'] == 'parity' else _time_job(job))
    except Exception as err:  # reported in the table instead of a traceback from a child process
        results.put(dict(error=_short_error(err)))


def _run_isolated(job: dict) -> dict:
    """Run a job in a fresh process; an ``error`` entry when it failed or died (e.g. killed for memory)."""
    return bench.run_isolated(_worker, job)


# ----------------------------------------------------------------------------------------------------- reporting
def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _parity_text(parity: dict) -> Tuple[str, bool]:
    """(cell text, ok) of a parity result."""
    if 'error' in parity:
        return 'error (see the notes)', False
    if 'diff' not in parity:
        return f"MISMATCH (shape {parity['out_shape']} vs official {parity['ref_shape']})", False
    ok = parity['diff'] <= parity['tol'] and not parity['missing']
    text = f"{'ok' if ok else 'MISMATCH'} {parity['diff']:.1e}"
    if parity['missing']:
        text += f" ({len(parity['missing'])} weights missing)"
    return text, ok


def _median(results: List[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official-root', required=True,
                        help='folder with one sub-folder per official GitHub repository (see the layout above)')
    parser.add_argument('--pairs', nargs='+', choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument('--size', type=bench._parse_size, help='HxW for every selected pair (default: each native)')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads of every process (0: torch default)')
    parser.add_argument('--repeats', type=int, default=2, help='rounds of (official, ours), each in fresh processes')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per process (median)')
    parser.add_argument('--device', default='cpu', help="'cpu' (default) or 'cuda'")
    parser.add_argument('--no-adapters', action='store_true',
                        help="build ours without the dense-prediction outputs the official classifier lacks "
                             "(PyramidTNT native_strides=True; the last level alone: out_indices=(2,) for PlainViT "
                             "and T2TViT, (3,) for the pyramids)")
    parser.add_argument('--markdown', action='store_true', help='print the table as Markdown (for the README)')
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('benchmark_official: --device cuda, but torch sees no CUDA device')
    if min(args.repeats, args.iters) < 1 or args.warmup < 0:
        raise SystemExit('benchmark_official: --repeats and --iters must be >= 1, --warmup >= 0')
    args.official_root = os.path.abspath(args.official_root)
    if args.threads:
        torch.set_num_threads(args.threads)
    gemm = bench.gemm_gflops(torch.device(args.device))

    header = ['official', 'ours', 'input', 'mode', 'official ms', 'ours ms', 'official/ours', 'official peak MB',
              'ours peak MB', 'parity at native size (max diff)']
    rows: List[List[str]] = []
    notes: List[str] = []
    for name in args.pairs:
        pair = PAIRS[name]
        size = args.size or pair.native
        size_text = f'{size[0]}x{size[1]}'
        ours_label = _ours_label(pair, args.no_adapters)
        parity = _run_isolated(dict(kind='parity', pair=name, args=args))
        parity_cell, _ = _parity_text(parity)
        _log(f"{pair.label} vs {ours_label} @ {pair.native[0]}x{pair.native[1]}: parity {parity_cell}"
             + (f" (tol {parity['tol']:.1e})" if 'tol' in parity else ''))
        if 'error' in parity:
            notes.append(f"{pair.label}: parity check failed: {parity['error']}")
            rows += [[pair.label, ours_label, size_text, mode] + ['-'] * 5 + [parity_cell] for mode in args.modes]
            continue
        if parity['unexpected']:
            notes.append(f"{pair.label}: {len(parity['unexpected'])} official tensors unused by ours: "
                         f"{', '.join(parity['unexpected'][:6])}")
        for mode in args.modes:
            runs: Dict[str, List[dict]] = {'official': [], 'ours': []}
            errors: Dict[str, str] = {}
            for r in range(args.repeats):
                for side in (('official', 'ours') if r % 2 == 0 else ('ours', 'official')):
                    if side in errors:  # a crash repeats: do not pay for it again
                        continue
                    job = dict(kind='time', pair=name, side=side, size=size, mode=mode, args=args,
                               layout=parity['layout'],
                               want_output=r == 0 and mode == 'fwd' and tuple(size) != tuple(pair.native))
                    result = _run_isolated(job)
                    if 'error' in result:
                        errors[side] = result['error']
                    else:
                        runs[side].append(result)
            cells = {}
            for side in ('official', 'ours'):
                if side in errors:
                    # (no '|' in a cell: it would split the Markdown row)
                    cells[side] = (f'{side} crashes: {errors[side]}'[:120].replace('|', '/'), '-')
                    notes.append(f'{pair.label} {size_text} {mode}: {side} crashes: {errors[side]}')
                else:
                    cells[side] = (f"{1e3 * _median(runs[side], 'seconds'):.0f}",
                                   f"{_median(runs[side], 'peak_mb'):.0f}")
            ratio = (f"{_median(runs['official'], 'seconds') / _median(runs['ours'], 'seconds'):.2f}"
                     if not errors else '-')
            row = [pair.label, ours_label, size_text, mode, cells['official'][0], cells['ours'][0], ratio,
                   cells['official'][1], cells['ours'][1], parity_cell]
            rows.append(row)
            _log('| ' + ' | '.join(row) + ' |')
            finals = [runs[s][0].get('final') for s in ('official', 'ours') if runs[s]]
            if len(finals) == 2 and all(f is not None for f in finals):
                ref, out = finals
                if ref.shape == out.shape:
                    diff, tol = float(np.abs(ref - out).max()), 1e-4 * float(np.abs(ref).max()) + 1e-5
                    notes.append(f'{pair.label} {size_text}: final maps differ by max {diff:.1e} (tol {tol:.1e}, '
                                 f'{"within" if diff <= tol else "outside"}; not a parity check at this size: ours '
                                 f'pads where the official code crops or floors)')
                else:
                    notes.append(f'{pair.label} {size_text}: final maps of different shapes (ours {out.shape[1:]}, '
                                 f'official {ref.shape[1:]}): ours pads to whole cells, the official code floors')

    print(f'\n{bench.machine_line(argparse.Namespace(device=args.device, threads=args.threads, amp=None), gemm)}; '
          f'batch 1; per process {args.iters} timed iterations (median) after {args.warmup} warm-up; median of '
          f'{args.repeats} round(s) of fresh processes')
    bench.print_table(header, rows, args.markdown, numeric=lambda i: 4 <= i <= 8)
    notes.append('official: ' + '; '.join(f'{PAIRS[n].label}: {PAIRS[n].source}' for n in args.pairs))
    for note in notes:
        print(f'* {note}')


if __name__ == '__main__':
    main()

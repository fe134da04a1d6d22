"""ONNX export with a dynamic input size, and its check in onnxruntime (``tools/export_onnx.py``).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` with ``dynamic_axes``. It records every
size computation that is graph arithmetic (``x.shape[i] // 16``, ``(-h) % 32``, ``torch.arange(h)``) as ONNX ops on
the run-time shape and reports every other use of a size, where tracing bakes in the export size, with a
``TracerWarning`` (a size turned into a Python number, ``if`` on a size, a loop over a size). :func:`export_onnx`
turns these warnings into an :class:`ExportError` that lists them: an exported file is either valid at every size or
not written. (The ``torch.export``-based exporter, ``dynamo=True``, silently keeps the export size in the same
places: a size-dependent ``if`` becomes a guard that the ONNX graph drops, a scale factor computed from the size and
adaptive pooling are baked in as constants.) The backbones take their general path while exporting
(:func:`~mmvit_backbones.models.layers.traceable.is_exporting`); attention uses its textbook form
(:func:`~mmvit_backbones.models.layers.attention`), which every opset has.

Whole detectors/segmentors are exported in mmengine's tensor mode (``model(inputs, None, mode='tensor')``): the raw
head outputs (detectors, before box decoding and NMS) or the logits (segmentors). :func:`exportable_modules` swaps
``nn.AdaptiveAvgPool2d`` (UPerNet's pyramid pooling) for an equal computation with a dynamic input size, and
``Tensor.unflatten`` (whose sizes the tracer silently fixes) for a reshape, for the duration of the export (as
mmdeploy rewrites functions for its backends); nothing else of the model changes.
"""
import contextlib
import linecache
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .models.layers.traceable import ceil_div

Size2d = Tuple[int, int]


class ExportError(RuntimeError):
    """The model cannot be exported with a dynamic input size (the message names the code that pins a size)."""


class OpsetError(ExportError):
    """The graph needs a higher opset than asked for; ``lowest`` is the lowest that works (None: none up to 18)."""

    def __init__(self, message: str, lowest: Optional[int]):
        super().__init__(message)
        self.lowest = lowest


# Size tests that tracing may fix because they only differ for inputs an exported model never gets: the empty-batch
# shortcut of the backbones (``if x.shape[0] == 0: return self.empty_outputs(x)``) is recorded as "not empty".
_HARMLESS_PINS = re.compile(r'\bif\s+\w+\.shape\[0\]\s*==\s*0\b')


def _is_harmless(warning: warnings.WarningMessage) -> bool:
    return bool(_HARMLESS_PINS.search(linecache.getline(warning.filename, warning.lineno)))


# ----------------------------------------------------------------------------------------------------- rewrites
def _adaptive_average_matrix(in_size: torch.Tensor, out_size: int, device: torch.device) -> torch.Tensor:
    """(out, in) matrix of ``adaptive_avg_pool`` along one axis: row o averages inputs
    ``floor(o * in / out) ... ceil((o + 1) * in / out) - 1`` (PyTorch's bins)."""
    rows = torch.arange(out_size, device=device)
    start = rows * in_size // out_size
    end = ceil_div((rows + 1) * in_size, out_size)
    columns = torch.arange(in_size, device=device)
    inside = ((columns >= start[:, None]) & (columns < end[:, None])).float()
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d_traceable(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` of a (B, C, H, W) tensor as two averaging matrices built from the run-time size
    (ONNX's AveragePool has a fixed kernel, so the TorchScript exporter only takes adaptive pooling to 1x1 or a
    fixed input size). ``None`` in ``output_size`` keeps that axis."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    out_h = x.shape[-2] if out_h is None else out_h
    out_w = x.shape[-1] if out_w is None else out_w
    rows = _adaptive_average_matrix(x.shape[-2], out_h, x.device).to(x.dtype)
    cols = _adaptive_average_matrix(x.shape[-1], out_w, x.device).to(x.dtype)
    return rows @ x @ cols.t()


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` with a dynamic input size (:func:`adaptive_avg_pool2d_traceable`)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, oh, ow)
        return adaptive_avg_pool2d_traceable(x, self.output_size)


def _traceable_unflatten(tensor: torch.Tensor, dim: int, sizes) -> torch.Tensor:
    """``Tensor.unflatten`` as a reshape to sizes taken from ``tensor.shape`` (traced sizes while exporting)."""
    dim = dim % tensor.dim()
    shape = list(tensor.shape)
    return tensor.reshape(shape[:dim] + list(sizes) + shape[dim + 1:])


@contextlib.contextmanager
def exportable_modules(model: nn.Module) -> Iterator[nn.Module]:
    """Within the context, the model's ``nn.AdaptiveAvgPool2d`` modules (other than to 1x1, which ONNX has) are
    their dynamic-size equivalent, and ``Tensor.unflatten`` is a reshape: the tracer records unflatten through its
    C++ decomposition with the sizes of the example input as constants (the batch size, too) and without a
    ``TracerWarning``. Everything is put back afterwards."""
    swapped = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
                setattr(parent, name, ExportableAdaptiveAvgPool2d(child.output_size))
                swapped.append((parent, name, child))
    unflatten = torch.Tensor.unflatten
    torch.Tensor.unflatten = _traceable_unflatten
    try:
        yield model
    finally:
        torch.Tensor.unflatten = unflatten
        for parent, name, child in swapped:
            setattr(parent, name, child)


# ------------------------------------------------------------------------------------------------------- export
def flatten_outputs(outputs, prefix: str = 'output') -> List[Tuple[str, torch.Tensor]]:
    """Nested tuples/lists/dicts of tensors -> ``[(name, tensor)]`` in the order the ONNX graph lists them
    (``output0``, ``output1_2`` ...)."""
    if isinstance(outputs, torch.Tensor):
        return [(prefix, outputs)]
    items = outputs.items() if isinstance(outputs, dict) else enumerate(outputs)
    flat = []
    for key, value in items:
        flat += flatten_outputs(value, f'{prefix}{key}' if prefix == 'output' else f'{prefix}_{key}')
    return flat


class TensorMode(nn.Module):
    """A detector/segmentor in mmengine's tensor mode: ``forward(inputs)`` returns its raw outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, None, mode='tensor')


LOWEST_OPSET, HIGHEST_OPSET = 11, 18  # the range the backbones are checked at (ONNX Runtime takes up to opset 21+)


@contextlib.contextmanager
def initializers_kept_apart() -> Iterator[None]:
    """Within the context, the TorchScript exporter keeps equal-valued parameters as separate initializers.

    Its de-duplication pass merges initializers with equal values (in eval mode), but leaves some nodes reading a
    removed one when constant folding is off: ONNX Runtime then rejects the file ("Node input
    'blocks.5.attn.var_norm.weight' is not a graph input", freshly initialised DeepViT, whose BatchNorm weights are
    all ones). Tied parameters are one tensor and stay one initializer without the pass."""
    passes = torch._C
    deduplicate = passes._jit_pass_onnx_deduplicate_initializers
    passes._jit_pass_onnx_deduplicate_initializers = lambda graph, params, is_train: params
    try:
        yield
    finally:
        passes._jit_pass_onnx_deduplicate_initializers = deduplicate


def _trace_to_onnx(model: nn.Module, example: torch.Tensor, path: str, opset: int, names: Sequence[str],
                   dynamic_axes: Optional[dict]) -> List[warnings.WarningMessage]:
    """One TorchScript export; returns the warnings it raised. Constant folding is off: folding stores the product of
    a parameter with a fixed index (e.g. a relative-position bias gathered from its table, one per block) instead of
    the parameter, a file several times the weights; ONNX Runtime folds the same subgraphs when it loads the file."""
    with warnings.catch_warnings(record=True) as caught, exportable_modules(model), initializers_kept_apart(), \
            torch.no_grad():
        warnings.simplefilter('always', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export',
                                category=DeprecationWarning)
        torch.onnx.export(model, (example, ), path, dynamo=False, input_names=['input'], output_names=list(names),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=False)
    return caught


def _runtime_problem(path: str) -> Optional[str]:
    """Why ONNX Runtime rejects the file at ``path`` (e.g. an operator with a type its opset lacks), or None."""
    try:
        ort_session(path, threads=1)
    except Exception as err:  # noqa: BLE001  (onnxruntime raises its own types: InvalidGraph, Fail)
        return 'ONNX Runtime rejects the graph: ' + str(err).splitlines()[0][:300]
    return None


def _opset_problem(model: nn.Module, example: torch.Tensor, path: str, opset: int, names: Sequence[str],
                   dynamic_axes: Optional[dict]) -> Optional[str]:
    """Why the model cannot be exported at ``opset`` (the exporter lacks an operator, or ONNX Runtime rejects the
    graph), or None. Writes ``path``."""
    try:
        _trace_to_onnx(model, example, path, opset, names, dynamic_axes)
    except torch.onnx.errors.OnnxExporterError as err:  # e.g. UnsupportedOperatorError: aten::einsum at opset 11
        return str(err).splitlines()[0]
    return _runtime_problem(path)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic: bool = True, opset: int = 17,
                output_names: Optional[Sequence[str]] = None) -> List[str]:
    """Export ``model`` (eval mode) for inputs like ``example`` (N, C, H, W) to ``path``; returns the output names.

    ``dynamic``: batch, height and width of the input (and of every output) are dynamic axes. Raises
    :class:`ExportError` when tracing had to fix a size (each ``TracerWarning`` with the code line that caused it),
    or when the graph needs a higher opset than ``opset`` (the message names the lowest that works).
    """
    model.eval()
    with torch.no_grad():
        reference = flatten_outputs(model(example))
    names = list(output_names) if output_names is not None else [name for name, _ in reference]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name, (_, tensor) in zip(names, reference):
            dynamic_axes[name] = {0: 'batch', **{d: f'{name}_dim{d}' for d in range(2, tensor.dim())}}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        caught = _trace_to_onnx(model, example, path, opset, names, dynamic_axes)
        problem = _runtime_problem(path)
    except torch.onnx.errors.OnnxExporterError as err:  # e.g. UnsupportedOperatorError: aten::einsum at opset 11
        caught, problem = [], str(err).splitlines()[0]
    if problem is not None:
        works = next((higher for higher in range(opset + 1, HIGHEST_OPSET + 1)
                      if _opset_problem(model, example, path, higher, names, dynamic_axes) is None), None)
        if os.path.exists(path):
            os.remove(path)
        fix = (f'the lowest opset that works is {works} (--opset {works})' if works is not None
               else f'no opset up to {HIGHEST_OPSET} works either')
        raise OpsetError(f'{type(model).__name__} cannot be exported at opset {opset}: {problem}; {fix}', works)
    traced = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    for w in caught:
        if w not in traced:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    pinned = [w for w in traced if not _is_harmless(w)]
    if pinned and dynamic:
        os.remove(path)
        lines = sorted({f'  {w.filename}:{w.lineno}: {str(w.message).splitlines()[0]}' for w in pinned})
        package = os.path.dirname(os.path.abspath(__file__))
        outside = sorted({w.filename for w in pinned if not os.path.abspath(w.filename).startswith(package)})
        if outside:  # e.g. SyncBatchNorm's empty-batch test in torch, or a head of mmdet/mmseg
            fix = ('the code is not part of mmvit_backbones: ' + ', '.join(outside) + ' (SyncBN layers: '
                   'mmengine.model.revert_sync_batchnorm(model) first; other modules: export with a static size)')
        else:
            fix = 'make them graph arithmetic (mmvit_backbones.models.layers.traceable) or export with a static size'
        raise ExportError(
            f'{type(model).__name__}: tracing fixed {len(lines)} size computation(s) to the export size '
            f'{tuple(example.shape[-2:])}, so the exported graph would be wrong at other sizes; {fix}:\n'
            + '\n'.join(lines))
    return names


# ------------------------------------------------------------------------------------------------------- checks
@dataclass
class SizeCheck:
    """onnxruntime vs PyTorch at one input shape: ``diffs`` = per output (name, max |ort - torch|, max |torch|)."""
    shape: Tuple[int, ...]
    diffs: List[Tuple[str, float, float]] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    rtol: float = 1e-4

    @property
    def ok(self) -> bool:
        return not self.errors and all(diff <= self.rtol * scale + 1e-6 for _, diff, scale in self.diffs)

    def lines(self) -> List[str]:
        head = f"input {'x'.join(map(str, self.shape))}: {'ok' if self.ok else 'MISMATCH'}"
        body = [f'  {name:<24} max|diff| {diff:.2e}  (max|ref| {scale:.2e}, relative {diff / max(scale, 1e-12):.1e})'
                for name, diff, scale in self.diffs]
        return [head] + body + [f'  ERROR {e}' for e in self.errors]


def check_sizes(h: int, w: int, min_size: int = 32) -> List[Size2d]:
    """The export size and two others: a larger non-square one not a multiple of 32 (odd), and a smaller one with
    the aspect ratio swapped."""
    odd = (h + h // 4 + 13, w + w // 8 + 7)
    if odd[0] == odd[1]:
        odd = (odd[0], odd[1] + 2)
    swapped = (max(min_size, (w * 3) // 4 - 1), max(min_size, (h * 3) // 4 + 5))
    sizes = [(h, w), odd, swapped]
    return [s for i, s in enumerate(sizes) if s not in sizes[:i]]


def ort_session(path: str, threads: Optional[int] = None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def compare_with_onnxruntime(model: nn.Module, path: str, shapes: Sequence[Tuple[int, ...]], rtol: float = 1e-4,
                             seed: int = 0) -> List[SizeCheck]:
    """Run the exported file and the model on random inputs of each shape (N, C, H, W); compare every output."""
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        check = SizeCheck(tuple(shape), rtol=rtol)
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            reference = flatten_outputs(model(x))
        try:
            outputs = session.run(None, {'input': x.numpy()})
        except Exception as err:  # noqa: BLE001  (onnxruntime raises its own types)
            check.errors.append(f'onnxruntime failed: {str(err).splitlines()[0][:300]}')
            results.append(check)
            continue
        if len(outputs) != len(reference):
            check.errors.append(f'{len(outputs)} outputs from onnxruntime, {len(reference)} from PyTorch')
        for name, (_, ref), out in zip(names, reference, outputs):
            ref = ref.float().numpy()
            if ref.shape != out.shape:
                check.errors.append(f'{name}: shape {out.shape} from onnxruntime, {ref.shape} from PyTorch')
                continue
            diff = float(abs(ref - out).max()) if ref.size else 0.0
            check.diffs.append((name, diff, float(abs(ref).max()) if ref.size else 0.0))
        results.append(check)
    return results


def measure_latency(model: nn.Module, path: str, shape: Tuple[int, ...], repeats: int = 3,
                    threads: Optional[int] = None) -> Dict[str, float]:
    """Seconds per forward of PyTorch (eager, no grad) and onnxruntime at ``shape``, both with ``threads`` threads
    (default: torch's), median of ``repeats`` after a warm-up: wall-clock (``torch``, ``onnxruntime``) and CPU time
    of the process (``torch_cpu``, ``onnxruntime_cpu``; with one thread the latency on an otherwise idle core, less
    disturbed than the wall clock on a shared machine)."""
    x = torch.randn(*shape)
    threads = threads or torch.get_num_threads()
    session = ort_session(path, threads)
    feed = {'input': x.numpy()}

    def medians(fn) -> Tuple[float, float]:
        fn()  # warm-up (caches, allocations)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            torch_s, torch_cpu = medians(lambda: model(x))
    finally:
        torch.set_num_threads(previous)
    ort_s, ort_cpu = medians(lambda: session.run(None, feed))
    return {'torch': torch_s, 'onnxruntime': ort_s, 'torch_cpu': torch_cpu, 'onnxruntime_cpu': ort_cpu}

"""Size arithmetic that survives tracing, for ONNX exports with a dynamic input size.

While a model is traced for export (``torch.onnx.export(..., dynamo=False)``, ``torch.jit.trace``), every size
(``x.shape[i]``, also of parameters) is a 0-d tensor. Arithmetic with ``+ - * // %`` is recorded in the graph and so
follows the input size at run time; anything that turns a size into a Python number is recorded as a constant of
the export size: ``math.ceil``/``int``/``float`` of a size, ``if`` on a size (``if pad:``, ``if hw != ref:``),
sizes used as dictionary keys (:class:`SizeCache`), a loop whose trip count depends on the size. The exported graph
is then only right at the export size. The exporter of this package (``mmvit_backbones.export``) turns every such
conversion into an error; the backbones avoid them with the helpers here:

* :func:`is_exporting`: true while tracing/exporting; a backbone then takes its general path (pad by a possibly
  zero amount, resize to a possibly equal size) instead of skipping work that is a no-op at the current size.
  Both paths compute the same values, so the exported model is the eager model.
* :func:`ceil_div`, :func:`pad_to_multiple`, :func:`size_min`, :func:`clamp_max`: the same on Python ints (eager)
  and traced sizes.
* :func:`bicubic_matrix` / :func:`traced_interpolate`: PyTorch's bicubic interpolation along one axis as an (out, in)
  matrix computed with tensor ops from a (traced) output size and an optional (traced) scale; needed where the sampling
  grid depends on the size through a scale factor (DINO's position-embedding rule), which ONNX ``Resize`` cannot take
  dynamically.
* :func:`repeated_max_pool`: ``k`` times max-pool 3x3/2 pad 1 for a ``k`` computed from the traced size (GC ViT's
  global-query pooling), as one max over the union of the pooled windows.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

Size = Union[int, torch.Tensor]  # a Python int in eager mode, a 0-d tensor while tracing
Size2d = Tuple[int, int]  # (height, width)


def is_exporting() -> bool:
    """True while the model is traced for export (``torch.onnx.export``, ``torch.jit.trace``)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def ceil_div(size: Size, divisor: int) -> Size:
    """``ceil(size / divisor)`` for a non-negative size, recorded as graph arithmetic while tracing."""
    return (size + divisor - 1) // divisor


def pad_to_multiple(size: Size, multiple: int) -> Size:
    """How much to add to ``size`` to reach a multiple of ``multiple`` (``-size % multiple``), with floor division
    only: under ``torch.compile`` with dynamic shapes a ``%`` of a size becomes a ``Mod`` in the symbolic sizes,
    which inductor (torch 2.13) cannot turn back into tensor arithmetic when the backward needs the size
    (``TensorReferenceAnalysis has no attribute 'python_mod'``)."""
    return ceil_div(size, multiple) * multiple - size


def clamp_max(x: torch.Tensor, bound: Size) -> torch.Tensor:
    """``x.clamp(max=bound)`` for an int or a traced (0-d tensor) bound (in ``x``'s dtype: a traced size is int64)."""
    return torch.minimum(x, bound.to(x.dtype)) if isinstance(bound, torch.Tensor) else x.clamp(max=bound)


def size_min(a: Size, b: Size) -> Size:
    """``min(a, b)`` of two sizes, recorded as graph arithmetic while tracing."""
    if isinstance(a, torch.Tensor):
        return clamp_max(a, b)
    return clamp_max(b, a) if isinstance(b, torch.Tensor) else min(a, b)


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """PyTorch's cubic convolution weights (``A = -0.75``) of the 4 taps at offsets -1, 0, 1, 2: (..., 4)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def bicubic_matrix(out_size: Size, in_size: Size, inverse_scale: Optional[torch.Tensor] = None,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """(out_size, in_size) matrix ``M`` with ``M @ x`` = ``F.interpolate(x, mode='bicubic', align_corners=False)``
    along one axis (the same taps, weights and border clamping as PyTorch).

    ``inverse_scale`` (0-d float tensor): input pixels per output pixel, as PyTorch uses it (``1 / scale_factor``
    when a scale factor is given); default ``in_size / out_size`` (interpolation to a size).
    """
    out_index = torch.arange(out_size, device=device, dtype=torch.float32)
    if inverse_scale is None:
        inverse_scale = in_size / out_size
    source = inverse_scale * (out_index + 0.5) - 0.5  # no clamping at 0 for cubic (PyTorch's rule)
    first = torch.floor(source)
    weights = _cubic_weights(source - first)  # (out, 4)
    # tap indices stay float (exact small integers): ONNX's Clip/Min take integers only from opset 12
    taps = first[:, None] + torch.arange(-1, 3, device=device, dtype=torch.float32)  # (out, 4)
    taps = clamp_max(taps.clamp(min=0), in_size - 1)  # border pixels repeat
    columns = torch.arange(in_size, device=device, dtype=torch.float32)
    # taps may repeat at the border: sum their weights per input column
    return ((taps[..., None] == columns).to(weights.dtype) * weights[..., None]).sum(dim=1)


def traced_interpolate(x: torch.Tensor, size, mode: str, inverse_scales=(None, None)) -> torch.Tensor:
    """``F.interpolate(x, size, mode)`` (``align_corners=False``) of a (..., H, W) tensor to a traced ``size``:
    bicubic as the product with two :func:`bicubic_matrix` (with PyTorch's scale-factor sampling where
    ``inverse_scales`` are given), other modes through ``F.interpolate`` (ONNX ``Resize`` to a dynamic size)."""
    if mode != 'bicubic':
        corners = dict(align_corners=False) if mode in ('linear', 'bilinear') else {}
        return F.interpolate(x, size=tuple(size), mode=mode, **corners)
    rows = bicubic_matrix(size[0], x.shape[-2], inverse_scales[0], x.device)
    cols = bicubic_matrix(size[1], x.shape[-1], inverse_scales[1], x.device)
    return rows @ x @ cols.t()


def repeated_max_pool(x: torch.Tensor, times: torch.Tensor, max_times: int) -> torch.Tensor:
    """``times`` x ``F.max_pool2d(x, 3, 2, 1)`` for a ``times`` (0-d int tensor, at most ``max_times``) known only at
    run time; the result has ``ceil(size / 2**times)`` rows and columns.

    ``k`` such pools take, for output row ``j``, the max over input rows ``2**k * j - (2**k - 1) ... 2**k * j +
    2**k - 1`` (the union of the nested windows): the max of two windows of ``2**k`` rows, which come from running
    maxima over windows doubled ``k`` times (``max_times`` doublings, each kept only while below ``k``).
    """
    for dim in (-2, -1):
        x = _repeated_max_pool_1d(x.transpose(dim, -1), times, max_times).transpose(dim, -1)
    return x


def _repeated_max_pool_1d(x: torch.Tensor, times: torch.Tensor, max_times: int) -> torch.Tensor:
    """:func:`repeated_max_pool` along the last axis."""
    n = x.shape[-1]
    span = 2 ** times  # the stride of k pools
    pad = span - 1 if is_exporting() else int(span) - 1  # (F.pad takes traced sizes, or Python ints)
    low = torch.finfo(x.dtype).min  # max-pool padding never wins
    x = F.pad(x, (pad, pad), value=low)  # row r at index r + span - 1
    run = x  # after the loop: run[i] = max(x[i - span + 1 ... i]), a window of span rows ending at index i
    length = run.shape[-1]
    for t in range(max_times):
        shifted = F.pad(run, (2 ** t, 0), value=low)[..., :length]  # shifted[i] = run[i - 2**t]
        doubled = torch.maximum(run, shifted)
        run = torch.where(times > t, doubled, run)
    centres = torch.arange(ceil_div(n, span), device=x.device) * span + pad  # index of row span * j
    left = run.index_select(-1, centres)  # rows span*j - span + 1 ... span*j
    right = run.index_select(-1, centres + pad)  # rows span*j ... span*j + span - 1
    return torch.maximum(left, right)

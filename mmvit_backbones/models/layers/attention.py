"""Scaled dot-product attention used by every backbone.

All attention in the package goes through :func:`attention`, which calls
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels, no materialised ``N x N`` matrix when the
backend allows it). :func:`naive_attention_mode` switches the whole package to the textbook formulation
(``softmax(q k^T * scale + bias) v``) so that ``tools/benchmark.py --compare-naive`` can measure the gain with the
very same weights. ONNX export (``torch.onnx.export``, ``tools/export_onnx.py``) always uses the textbook form: plain
MatMul/Softmax exist at every opset and in every runtime, fused attention does not (the same computation, so the
exported model is the eager one).
"""
from contextlib import contextmanager
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

from .traceable import is_exporting

_NAIVE = False
# Largest number of map entries (batch x heads x query rows x keys) one chunk of :func:`chunked_attention` holds.
MAP_CHUNK_ELEMENTS = 2 ** 21


@contextmanager
def naive_attention_mode(enabled: bool = True) -> Iterator[None]:
    """Within this context :func:`attention` uses explicit matmul + softmax (for benchmarks and debugging)."""
    global _NAIVE
    previous, _NAIVE = _NAIVE, enabled
    try:
        yield
    finally:
        _NAIVE = previous


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor] = None,
              scale: Optional[float] = None) -> torch.Tensor:
    """Multi-head attention core.

    Args:
        q: (B, heads, Nq, d). k: (B, heads, Nk, d). v: (B, heads, Nk, dv).
        bias: additive logits bias broadcastable to (B, heads, Nq, Nk), e.g. relative position biases.
        scale: logits scale; defaults to ``d ** -0.5``.
    Returns:
        (B, heads, Nq, dv)
    """
    if _NAIVE or torch.onnx.is_in_onnx_export():
        return _textbook_attention(q, k, v, bias, q.shape[-1] ** -0.5 if scale is None else scale)
    # A bias that needs a gradient (a learnt relative-position bias in training) sends CPU SDPA to its math path: the
    # textbook computation plus guards for fully masked rows (isneginf/all/where over every map). Learnt biases are
    # finite, so the guards never act: skip them, and compute large maps in cache-sized chunks.
    if bias is not None and bias.requires_grad and q.device.type == 'cpu' and torch.is_grad_enabled():
        return chunked_attention(q, k, v, bias, scale)
    splits = _backward_row_splits(q, k, v, bias)
    if splits > 1:
        return _RowSplitFlashAttention.apply(q, k, v, scale, splits)
    if bias is not None:
        # SDPA picks its kernel from ``requires_grad`` whatever the grad mode: a learnt bias used as it is stored
        # (PyramidTNT's at its pretraining size, a view of the parameter) sent inference to the math path
        bias = bias.to(q.dtype) if torch.is_grad_enabled() else bias.detach().to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


# Fewest query rows per share of :class:`_RowSplitFlashAttention`'s backward: below that the split buys nothing.
MIN_SPLIT_ROWS = 256


def _backward_row_splits(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor]) -> int:
    """Into how many shares of query rows CPU training splits each (batch, head) pair's attention backward.

    PyTorch's CPU flash-attention backward parallelises over batch x heads only (its forward also over blocks of query
    rows), so a pair count below the thread count leaves threads idle for the most expensive kernel of the step:
    Shunted-S's first stage attends with one head per group at batch 1 (66800 queries at 800x1333), and at 16 threads
    even a ViT's 6 heads use 6. 1 where the plain SDPA call is taken (inference, a bias, too few rows, no idle thread,
    export, textbook mode, torch.compile, which lowers attention itself, and CPU autocast, where SDPA casts its inputs
    and a direct call of the kernel would not).
    """
    if (q.device.type != 'cpu' or bias is not None or not torch.is_grad_enabled()
            or not (q.requires_grad or k.requires_grad or v.requires_grad)
            or _NAIVE or is_exporting() or torch.compiler.is_compiling() or torch.is_autocast_enabled('cpu')
            or q.dim() != 4 or k.shape[:2] != q.shape[:2] or v.shape[:2] != q.shape[:2]
            or not q.shape[-1] == k.shape[-1] == v.shape[-1] or not q.dtype == k.dtype == v.dtype):
        return 1
    threads = torch.get_num_threads()
    if q.shape[0] * q.shape[1] >= threads:
        return 1
    return max(1, min(threads, q.shape[2] // MIN_SPLIT_ROWS))


class _RowSplitFlashAttention(torch.autograd.Function):
    """SDPA (CPU flash kernel) whose backward runs each (batch, head) pair as ``splits`` shares of its query rows.

    The forward is the very kernel ``F.scaled_dot_product_attention`` calls on CPU in training (same values, same
    saved tensors: q, k, v, output, log-sum-exp). Query rows are independent given the log-sum-exp, so the backward
    of a pair's rows split into shares, presented to the kernel as that many heads over the same keys and values,
    is the pair's backward: grad_q share by share, grad_k and grad_v the sum over the shares. The kernel then has
    ``splits`` work items per pair instead of one. Query rows are viewed, never copied; keys and values are
    broadcast (stride 0) to the shares; the rows that do not fill a share go through one small extra call.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float],
                splits: int) -> torch.Tensor:
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)
        ctx.save_for_backward(q, k, v, out, logsumexp)
        ctx.scale, ctx.splits = scale, splits
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, logsumexp = ctx.saved_tensors
        flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        splits, nq = ctx.splits, q.shape[2]
        split_rows = nq // splits * splits
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for i in range(q.shape[0]):
            for j in range(q.shape[1]):
                def shares(t: torch.Tensor) -> torch.Tensor:  # rows of pair (i, j) as (1, splits, rows/split, ...)
                    return t[i, j, :split_rows].unflatten(0, (splits, -1)).unsqueeze(0)

                keys, values = (t[i:i + 1, j:j + 1].expand(1, splits, -1, -1) for t in (k, v))
                dq, dk, dv = flash_backward(shares(grad_out), shares(q), keys, values, shares(out), shares(logsumexp),
                                            0.0, False, scale=ctx.scale)
                grad_q[i, j, :split_rows] = dq.flatten(1, 2)[0]
                torch.sum(dk[0], dim=0, out=grad_k[i, j])
                torch.sum(dv[0], dim=0, out=grad_v[i, j])
                if split_rows < nq:
                    pair, rest = (slice(i, i + 1), slice(j, j + 1)), slice(split_rows, nq)
                    dq, dk, dv = flash_backward(grad_out[pair + (rest,)], q[pair + (rest,)], k[pair], v[pair],
                                                out[pair + (rest,)], logsumexp[pair + (rest,)], 0.0, False,
                                                scale=ctx.scale)
                    grad_q[i, j, split_rows:] = dq[0, 0]
                    grad_k[i, j] += dk[0, 0]
                    grad_v[i, j] += dv[0, 0]
        return grad_q, grad_k, grad_v, None, None


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor] = None,
                      scale: Optional[float] = None, mix: Optional[torch.Tensor] = None,
                      chunk_elements: Optional[int] = None) -> torch.Tensor:
    """Attention with explicit maps, computed in chunks of query rows: ``softmax(q k^T * scale + bias)``, optionally
    mixed over the heads (``mix`` (H, H): ``maps_h <- sum_g mix[h, g] maps_g``, DeepViT's re-attention), times v.

    For what SDPA cannot fuse on CPU: a bias that needs a gradient, head mixing. The textbook form materialises every
    (B, H, Nq, Nk) map and keeps them for backward; here chunks of at most ``chunk_elements`` map entries (default
    :data:`MAP_CHUNK_ELEMENTS`: bias, softmax and mixing of a chunk stay in the last-level cache) are written
    into one reused workspace, and backward recomputes each chunk's maps from q/k/v (flash attention's recompute),
    so nothing of size Nq x Nk outlives a chunk but the bias gradient. Shapes as :func:`attention`; ``bias``
    broadcastable to (B, H, Nq, Nk). Same values as the textbook form; ONNX export uses the textbook form.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    # one pass: textbook mode, an exported graph (before any size arithmetic: traced sizes are tensors), and
    # torch.compile, which fuses the map operations itself (its trace of the chunk loop with in-place workspace
    # writes takes inductor impractically long to compile)
    if _NAIVE or is_exporting() or torch.compiler.is_compiling():
        return _textbook_attention(q, k, v, bias, scale, mix)
    b, heads, nk = q.shape[0], q.shape[1], k.shape[2]
    rows = max(1, (chunk_elements or MAP_CHUNK_ELEMENTS) // max(1, b * heads * nk))
    if q.shape[2] <= rows:
        return _textbook_attention(q, k, v, bias, scale, mix)
    return _ChunkedAttention.apply(q, k, v, bias, scale, mix, rows, getattr(bias, _SINK_ATTRIBUTE, None))


# The attribute by which a bias from :func:`share_bias_gradient` carries its :class:`_BiasGradientSink`.
_SINK_ATTRIBUTE = '_mmvit_bias_gradient_sink'


class _BiasGradientSink:
    """One buffer that the chunked backwards of every attention call sharing a bias add their bias gradient into."""

    def __init__(self):
        self.grad: Optional[torch.Tensor] = None

    def buffer(self, bias: torch.Tensor) -> torch.Tensor:
        if self.grad is None:  # zero-filled once per backward pass; every call then adds its rows
            self.grad = torch.zeros_like(bias)
        return self.grad


def share_bias_gradient(bias: torch.Tensor) -> torch.Tensor:
    """``bias`` (the same values) for several attention calls of one forward, e.g. all blocks of a stage.

    In CPU training the chunked backward of each call then adds its bias gradient into one buffer, which autograd
    receives once, instead of every call returning a bias-sized gradient for autograd to sum. At detection sizes those
    are large (a stage bias of PyramidTNT, once per block), and each would be freshly allocated memory, which glibc's
    malloc maps anew and the kernel faults in page by page. Elsewhere (inference, no gradient, export, torch.compile)
    ``bias`` is returned as it is; gradients that reach the bias another way (textbook mode, small maps) are added as
    usual.
    """
    if (not torch.is_grad_enabled() or not bias.requires_grad or bias.device.type != 'cpu' or is_exporting()
            or torch.compiler.is_compiling()):
        return bias
    sink = _BiasGradientSink()
    shared = _SharedBiasGradient.apply(bias, sink)
    setattr(shared, _SINK_ATTRIBUTE, sink)
    return shared


class _SharedBiasGradient(torch.autograd.Function):
    """Identity whose backward adds the sink's sum to the gradient that arrived through autograd (if any)."""

    @staticmethod
    def forward(ctx, bias: torch.Tensor, sink: _BiasGradientSink) -> torch.Tensor:
        ctx.sink = sink
        ctx.set_materialize_grads(False)  # every consumer may have answered through the sink: no zero-filled map
        return bias.view_as(bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Optional[torch.Tensor]):
        total, ctx.sink.grad = ctx.sink.grad, None  # emptied: a second backward pass starts from zero
        if total is None:
            return grad, None
        if grad is not None:
            total += grad
        return total, None


def _textbook_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
                        scale: float, mix: Optional[torch.Tensor] = None) -> torch.Tensor:
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, H, Nq, Nk)
    if bias is not None:
        logits = logits + bias
    maps = logits.softmax(dim=-1)
    if mix is not None:  # over the head axis as one batched GEMM on the flattened maps: no permute
        b, heads, nq, nk = maps.shape
        maps = (mix @ maps.reshape(b, heads, nq * nk)).reshape(b, heads, nq, nk)
    return maps @ v


class _ChunkedAttention(torch.autograd.Function):
    """:func:`chunked_attention`'s forward and backward over chunks of ``rows`` query rows."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], scale: float,
                mix: Optional[torch.Tensor], rows: int, sink: Optional[_BiasGradientSink]) -> torch.Tensor:
        b, heads, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        qs, k, v = q.contiguous() * scale, k.contiguous(), v.contiguous()
        workspace = q.new_empty(3, b * heads * rows * nk)
        out = []
        for start in range(0, nq, rows):
            logits, maps, mixed = _chunk_views(workspace, b, heads, min(rows, nq - start), nk)
            _chunk_maps(qs[:, :, start:start + rows], k, _bias_rows(bias, start, rows), logits, maps)
            if mix is not None:
                maps = torch.matmul(mix, maps.view(b, heads, -1), out=mixed.view(b, heads, -1)).view_as(maps)
            out.append(maps @ v)
        ctx.save_for_backward(qs, k, v, bias, mix)
        ctx.scale, ctx.rows, ctx.sink = scale, rows, sink
        return torch.cat(out, dim=2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        qs, k, v, bias, mix = ctx.saved_tensors
        scale, rows = ctx.scale, ctx.rows
        b, heads, nq, nk = qs.shape[0], qs.shape[1], qs.shape[2], k.shape[2]
        grad_out = grad_out.contiguous()
        grad_q, grad_k, grad_v = [], torch.zeros_like(k), torch.zeros_like(v)
        grad_mix = torch.zeros_like(mix) if mix is not None else None
        # a bias with a row per query row gets each row written once, by its chunk (no zero fill); a bias shared by
        # all query rows sums over the chunks; a bias shared by several calls (share_bias_gradient) sums into its sink
        bias_per_row = bias is not None and bias.shape[-2] > 1
        grad_bias, sink = None, ctx.sink
        if ctx.needs_input_grad[3]:
            if sink is not None:
                grad_bias = sink.buffer(bias)
            else:
                grad_bias = torch.empty_like(bias) if bias_per_row else torch.zeros_like(bias)
        workspace = qs.new_empty(3, b * heads * rows * nk)
        for start in range(0, nq, rows):
            n = min(rows, nq - start)
            scratch, maps, spare = _chunk_views(workspace, b, heads, n, nk)
            qs_rows, grad_rows = qs[:, :, start:start + rows], grad_out[:, :, start:start + rows]
            _chunk_maps(qs_rows, k, _bias_rows(bias, start, rows), scratch, maps)
            mixed = maps
            if mix is not None:
                mixed = torch.matmul(mix, maps.view(b, heads, -1), out=scratch.view(b, heads, -1)).view_as(maps)
            # out = mixed @ v:  dv += mixed^T dout,  dmixed = dout v^T
            grad_v.view(b * heads, nk, -1).baddbmm_(mixed.view(b * heads, n, nk).transpose(1, 2),
                                                     grad_rows.reshape(b * heads, n, -1))
            grad_maps = torch.matmul(grad_rows, v.transpose(-2, -1), out=scratch)
            if mix is not None:  # mixed = mix @ maps over heads:  dmix += dmixed maps^T,  dmaps = mix^T dmixed
                grad_mix += torch.bmm(grad_maps.view(b, heads, -1), maps.view(b, heads, -1).transpose(1, 2)).sum(0)
                grad_maps = torch.matmul(mix.t(), grad_maps.view(b, heads, -1),
                                         out=spare.view(b, heads, -1)).view_as(maps)
            grad_logits = torch.ops.aten._softmax_backward_data.out(grad_maps, maps, -1, maps.dtype, grad_input=spare
                                                                    if mix is None else scratch)
            if grad_bias is not None:  # reduced over the axes the bias broadcasts along
                grad_bias_rows = _bias_rows(grad_bias, start, rows)
                if bias_per_row and sink is None:
                    grad_bias_rows.copy_(grad_logits.sum_to_size(grad_bias_rows.shape))
                else:
                    grad_bias_rows += grad_logits.sum_to_size(grad_bias_rows.shape)
            # logits = (q * scale) k^T:  dq = scale * dlogits k,  dk += dlogits^T (q * scale)
            grad_q.append((grad_logits @ k).mul_(scale))
            grad_k.view(b * heads, nk, -1).baddbmm_(grad_logits.view(b * heads, n, nk).transpose(1, 2),
                                                     qs_rows.reshape(b * heads, n, -1))
        if sink is not None:  # handed to autograd once, by _SharedBiasGradient
            grad_bias = None
        return torch.cat(grad_q, dim=2), grad_k, grad_v, grad_bias, None, grad_mix, None, None


def _chunk_views(workspace: torch.Tensor, b: int, heads: int, rows: int, nk: int) -> List[torch.Tensor]:
    """The workspace's three (B, H, rows, Nk) buffers for a chunk of ``rows`` query rows."""
    return [w[:b * heads * rows * nk].view(b, heads, rows, nk) for w in workspace]


def _chunk_maps(qs_rows: torch.Tensor, k: torch.Tensor, bias_rows: Optional[torch.Tensor], logits: torch.Tensor,
                maps: torch.Tensor) -> None:
    """``maps = softmax(qs_rows k^T + bias_rows)`` (q already scaled); ``logits`` is scratch."""
    torch.matmul(qs_rows, k.transpose(-2, -1), out=logits)
    if bias_rows is not None:
        logits.add_(bias_rows)
    torch.ops.aten._softmax.out(logits, -1, False, out=maps)


def _bias_rows(bias: Optional[torch.Tensor], start: int, rows: int) -> Optional[torch.Tensor]:
    """The bias of query rows ``start:start + rows`` (a bias shared by all query rows is returned as it is)."""
    return bias[..., start:start + rows, :] if bias is not None and bias.shape[-2] > 1 else bias

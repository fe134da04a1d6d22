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
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

_NAIVE = False


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
    # A bias that needs a gradient (a learnt relative-position bias in training) sends CPU SDPA to its math path:
    # this same computation plus guards for fully masked rows (isneginf/all/where over every map: ~6% of a
    # PyramidTNT-S training step at 800x1333). Learnt biases are finite, so the guards never act: skip them.
    textbook = bias is not None and bias.requires_grad and q.device.type == 'cpu' and torch.is_grad_enabled()
    if textbook or _NAIVE or torch.onnx.is_in_onnx_export():
        logits = (q * (q.shape[-1] ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        return logits.softmax(dim=-1) @ v
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

"""The shared attention cores: chunked maps equal the textbook form in values and gradients."""
import importlib

import pytest
import torch

from mmvit_backbones.models.layers import attention, chunked_attention, naive_attention_mode, share_bias_gradient

# the package exports a function of the same name as the module
attention_module = importlib.import_module('mmvit_backbones.models.layers.attention')

B, HEADS, NQ, NK, D = 2, 3, 23, 19, 5


def _inputs(bias_shape, mix: bool):
    torch.manual_seed(0)
    make = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    q, k, v = make(B, HEADS, NQ, D), make(B, HEADS, NK, D), make(B, HEADS, NK, D)
    bias = make(*bias_shape) if bias_shape else None
    return q, k, v, bias, make(HEADS, HEADS) if mix else None


@pytest.mark.parametrize('mix', [False, True])
@pytest.mark.parametrize('bias_shape', [None, (1, HEADS, NQ, NK), (B, HEADS, NQ, NK), (B, 1, 1, NK)])
def test_chunks_equal_textbook(bias_shape, mix):
    """Chunks of 2 query rows (the last one shorter) give the textbook values and the gradients of q, k, v, a learnt
    bias of any broadcast shape and the head mixing (DeepViT's re-attention)."""
    inputs = _inputs(bias_shape, mix)
    q, k, v, bias, mixing = inputs
    wanted = [t for t in inputs if t is not None]
    reference = attention_module._textbook_attention(q, k, v, bias, 0.7, mixing)
    grad = torch.randn_like(reference)
    out = chunked_attention(q, k, v, bias, 0.7, mixing, chunk_elements=2 * B * HEADS * NK)
    torch.testing.assert_close(out, reference)
    for got, expected in zip(torch.autograd.grad(out, wanted, grad),
                             torch.autograd.grad(reference, wanted, grad)):
        torch.testing.assert_close(got, expected)


def test_chunk_gradients_numerically():
    """The hand-written backward against finite differences (one query row per chunk, learnt bias and mixing)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 3, dtype=torch.float64, requires_grad=True) for n in (5, 4, 4))
    bias = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    mix = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: chunked_attention(*t[:4], 0.7, t[4], chunk_elements=8),
                                    (q, k, v, bias, mix))


@pytest.mark.parametrize('bias_shape', [(1, HEADS, NQ, NK), (B, 1, 1, NK)])
def test_shared_bias_gradient(monkeypatch, bias_shape):
    """A bias shared by several calls (three chunked, one small enough for the one-pass form) gets the gradient of
    the unshared bias, summed in one buffer; a second backward pass over the same graph starts from zero."""
    q, k, v, bias, _ = _inputs(bias_shape, False)
    sinks = []
    original = attention_module._BiasGradientSink.buffer
    monkeypatch.setattr(attention_module._BiasGradientSink, 'buffer',
                        lambda self, like: sinks.append(self) or original(self, like))

    def forward(shared):  # per call a different scale: different gradients to sum
        outs = [chunked_attention(q, k, v, shared, 0.3 + 0.2 * i, chunk_elements=2 * B * HEADS * NK)
                for i in range(3)]
        return sum(outs) + chunked_attention(q[:, :, :1], k, v, shared[..., :1, :] if shared.shape[-2] > 1 else shared)

    grad = torch.randn(B, HEADS, NQ, D, dtype=torch.float64)
    expected = torch.autograd.grad(forward(bias), (q, k, v, bias), grad)
    out = forward(share_bias_gradient(bias))
    for _ in range(2):
        for got, want in zip(torch.autograd.grad(out, (q, k, v, bias), grad, retain_graph=True), expected):
            torch.testing.assert_close(got, want)
    assert len(set(map(id, sinks))) == 1 and len(sinks) == 6  # one sink, filled by three calls in each pass
    with torch.no_grad():
        assert share_bias_gradient(bias) is bias


def test_masked_keys_in_chunks():
    """A -inf mask (padded keys of a window) removes those keys in every chunk."""
    q, k, v, _, _ = _inputs(None, False)
    mask = torch.zeros(1, 1, NQ, NK, dtype=torch.float64)
    mask[..., 7:] = float('-inf')
    out = chunked_attention(q, k, v, mask, chunk_elements=B * HEADS * NK)
    torch.testing.assert_close(out, chunked_attention(q, k[:, :, :7], v[:, :, :7]))


def test_learnt_bias_in_training_uses_chunks(monkeypatch):
    """On CPU a bias that needs a gradient goes through the chunks; SDPA, textbook mode and the chunks agree."""
    q, k, v, bias, _ = _inputs((1, HEADS, NQ, NK), False)
    q, k, v = (t.float() for t in (q, k, v))
    bias = bias.detach().float().requires_grad_()
    calls = []
    monkeypatch.setattr(attention_module, 'MAP_CHUNK_ELEMENTS', 2 * B * HEADS * NK)
    monkeypatch.setattr(attention_module._ChunkedAttention, 'apply',
                        lambda *args, original=attention_module._ChunkedAttention.apply: calls.append(1)
                        or original(*args))
    chunked = attention(q, k, v, bias)
    assert calls
    with torch.no_grad():
        fused = attention(q, k, v, bias)
    with naive_attention_mode():
        textbook = attention(q, k, v, bias)
    assert len(calls) == 1
    torch.testing.assert_close(chunked, fused)
    torch.testing.assert_close(chunked, textbook)


def test_learnt_bias_in_inference_uses_the_fused_kernel():
    """Under no_grad a bias that is (a view of) a parameter still runs CPU SDPA's fused kernel, not its math path
    (SDPA reads ``requires_grad`` whatever the grad mode: PyramidTNT at its pretraining size ran ~10% slower)."""
    q, k, v, bias, _ = _inputs((1, HEADS, NQ, NK), False)
    q, k, v = (t.detach().float() for t in (q, k, v))
    bias = torch.nn.Parameter(bias.detach().float()).view(1, HEADS, NQ, NK)
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fused = attention(q, k, v, bias)
    assert bias.requires_grad
    kernels = {e.key for e in prof.key_averages()}
    assert 'aten::_scaled_dot_product_flash_attention_for_cpu' in kernels, kernels
    assert 'aten::_scaled_dot_product_attention_math' not in kernels, kernels
    with naive_attention_mode():
        torch.testing.assert_close(fused, attention(q, k, v, bias))


@pytest.mark.parametrize('heads', [1, 2])
def test_row_split_backward_equals_sdpa(heads):
    """The CPU training path that splits each (batch, head) pair's query rows into shares for the flash backward:
    its output is SDPA's bit for bit, its gradients SDPA's and finite differences' (23 rows in 3 shares: the last
    two rows go through the extra call), and non-contiguous queries (a (B, N, heads, d) projection seen head-major,
    as the backbones pass them) are read in place."""
    torch.manual_seed(0)
    make = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    q = make(2, NQ, heads, D).transpose(1, 2)
    k, v = make(2, heads, NK, D), make(2, heads, NK, D)
    assert torch.autograd.gradcheck(
        lambda *t: attention_module._RowSplitFlashAttention.apply(*t, 0.7, 3), (q, k, v))
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    out = attention_module._RowSplitFlashAttention.apply(q32, k32, v32, 0.7, 3)
    reference = torch.nn.functional.scaled_dot_product_attention(q32, k32, v32, scale=0.7)
    assert torch.equal(out, reference)
    grad = torch.randn_like(out)
    for got, expected in zip(torch.autograd.grad(out, (q32, k32, v32), grad),
                             torch.autograd.grad(reference, (q32, k32, v32), grad)):
        torch.testing.assert_close(got, expected)


def test_row_split_only_where_threads_would_idle(monkeypatch):
    """attention() takes the row-split backward on CPU in training when batch x heads is below the thread count and
    the rows fill at least two shares; not in inference, with a bias, with enough pairs, in textbook mode or under
    CPU autocast."""
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 4)
    rows = 2 * attention_module.MIN_SPLIT_ROWS
    q, k, v = (torch.randn(1, 2, n, 8, requires_grad=True) for n in (rows, 16, 16))
    assert attention_module._backward_row_splits(q, k, v, None) == 2
    assert type(attention(q, k, v).grad_fn).__name__ == '_RowSplitFlashAttentionBackward'
    with torch.no_grad():
        assert attention_module._backward_row_splits(q, k, v, None) == 1
    assert attention_module._backward_row_splits(q, k, v, torch.zeros(rows, 16)) == 1
    assert attention_module._backward_row_splits(q[:, :1, :rows // 2], k[:, :1], v[:, :1], None) == 1  # one share
    many = [t.expand(2, 2, -1, -1) for t in (q, k, v)]  # 4 pairs: a thread each
    assert attention_module._backward_row_splits(*many, None) == 1
    with naive_attention_mode():
        assert type(attention(q, k, v).grad_fn).__name__ != '_RowSplitFlashAttentionBackward'
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert attention_module._backward_row_splits(q, k, v, None) == 1

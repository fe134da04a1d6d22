"""Resizing of resolution-dependent tensors (mmvit_backbones/models/layers/resize.py)."""
import pytest
import torch
import torch.nn.functional as F

from mmvit_backbones.models.layers import resize_dense_bias


def interpolate_dense_bias(bias, src_q, src_k, dst_q, dst_k):
    """The tensor-product bicubic resize written with F.interpolate: keys first, then queries."""
    heads = bias.shape[1]
    out = F.interpolate(bias.reshape(heads * src_q[0] * src_q[1], 1, *src_k), size=dst_k, mode='bicubic',
                        align_corners=False).reshape(heads, src_q[0] * src_q[1], -1)
    nk = out.shape[-1]
    out = F.interpolate(out.transpose(1, 2).reshape(heads * nk, 1, *src_q), size=dst_q, mode='bicubic',
                        align_corners=False).reshape(heads, nk, -1).transpose(1, 2)
    return out.reshape(1, heads, -1, nk)


@pytest.mark.parametrize('dst_q, dst_k', [((13, 21), (4, 6)), ((5, 3), (2, 2)), ((8, 8), (2, 3))])
def test_dense_bias_resize_is_pytorch_bicubic_in_values_and_gradients(dst_q, dst_k):
    """The matrix form (a GEMM in training, where the learnt table is resized every step) computes what
    F.interpolate computes (to float32 rounding), forward and backward, up- and downsampling, one grid unchanged."""
    src_q, src_k = (8, 8), (2, 3)
    table = torch.randn(1, 2, 64, 6, requires_grad=True)
    ours = resize_dense_bias(table, src_q, src_k, dst_q, dst_k)
    reference = interpolate_dense_bias(table, src_q, src_k, dst_q, dst_k)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert ours.is_contiguous()  # the (Nq, Nk) layout attention reads: no transposed copy of a whole map
    weights = torch.randn_like(reference)
    grad_ours, = torch.autograd.grad((ours * weights).sum(), table)
    grad_reference, = torch.autograd.grad((reference * weights).sum(), table)
    torch.testing.assert_close(grad_ours, grad_reference, rtol=1e-5, atol=1e-5)

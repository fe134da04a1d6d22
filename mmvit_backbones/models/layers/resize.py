"""Resizing of resolution-dependent tensors, written once for every backbone.

Vision transformers trained at one resolution carry tensors whose shape is tied to that resolution: absolute position
embeddings (a token grid), dense relative biases (query grid x key grid), relative-position tables (window sizes) and
1-D relative logits. Dense prediction runs at other sizes, so these are resized:

* at **load time** (a ``load_state_dict`` pre-hook in the owning module) when a checkpoint was made at another
  resolution than the model was built for, and
* at **run time** to the actual token grid of the input, cached per size by :class:`SizeCache` when no gradient
  flows (inference), so repeated images of one size do not pay for it again.

Interpolation is PyTorch's (``F.interpolate``, or for dense biases its bicubic weights as matrices) on the
tensor's natural 2-D grid (never scipy). While a model is traced for ONNX export the target grid is a traced size:
the resizes then always run (a resize to the same size is the identity), bicubic ones as interpolation matrices
built from that size (:func:`~.traceable.traced_interpolate`), and nothing is cached (see :mod:`.traceable`).
"""
from collections import OrderedDict
from typing import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F

from .traceable import Size2d, bicubic_matrix, is_exporting, traced_interpolate


def resize_grid_embed(embed: torch.Tensor, src_hw: Size2d, dst_hw: Size2d, num_extra_tokens: int = 0,
                      mode: str = 'bicubic', scale_factor_rule: bool = False) -> torch.Tensor:
    """Resize a (1, extra + Hs*Ws, C) token embedding laid out on a grid to (1, extra + Hd*Wd, C).

    The first ``num_extra_tokens`` entries (cls/dist tokens) are kept as they are.
    ``scale_factor_rule`` reproduces DINO's ``interpolate_pos_encoding``: ``scale_factor=((Hd+0.1)/Hs, (Wd+0.1)/Ws)``
    instead of a target size; it samples slightly different points (~1e-3) and is needed for parity with DINO.
    """
    src_hw, dst_hw = tuple(src_hw), tuple(dst_hw)
    exporting = is_exporting()
    if not exporting and src_hw == dst_hw:
        return embed
    extra, grid = embed[:, :num_extra_tokens], embed[:, num_extra_tokens:]
    channels = grid.shape[-1]
    if not exporting and grid.shape[1] != src_hw[0] * src_hw[1]:
        raise ValueError(f'position embedding has {grid.shape[1]} grid tokens, expected {src_hw[0]}x{src_hw[1]}')
    grid = grid.reshape(1, src_hw[0], src_hw[1], channels).permute(0, 3, 1, 2)
    if exporting:  # dst_hw is traced: sample as below, with scale 1 (the identity) where eager returns early
        inverse_scales = (None, None)
        if scale_factor_rule:
            same = (dst_hw[0] == src_hw[0]) & (dst_hw[1] == src_hw[1])
            inverse_scales = tuple(torch.where(same, 1.0, src / (dst + 0.1)) for src, dst in zip(src_hw, dst_hw))
        grid = traced_interpolate(grid.float(), dst_hw, mode, inverse_scales)
    elif scale_factor_rule:
        scale = ((dst_hw[0] + 0.1) / src_hw[0], (dst_hw[1] + 0.1) / src_hw[1])
        grid = F.interpolate(grid.float(), scale_factor=scale, mode=mode, align_corners=False)
        if tuple(grid.shape[-2:]) != dst_hw:
            raise RuntimeError(f'scale-factor interpolation gave {tuple(grid.shape[-2:])}, expected {dst_hw}')
    else:
        grid = F.interpolate(grid.float(), size=dst_hw, mode=mode, align_corners=False)
    grid = grid.to(embed.dtype).permute(0, 2, 3, 1).reshape(1, dst_hw[0] * dst_hw[1], channels)
    return torch.cat([extra, grid], dim=1)


def resize_dense_bias(bias: torch.Tensor, src_q_hw: Size2d, src_k_hw: Size2d, dst_q_hw: Size2d, dst_k_hw: Size2d,
                      mode: str = 'bicubic') -> torch.Tensor:
    """Resize a dense attention bias (..., Nq, Nk) defined over a query grid and a key grid.

    Each logit is indexed by a query position (y_q, x_q) and a key position (y_k, x_k): a 4-D function. It is resized
    separably, first over the key grid (every query row is an image over keys), then over the query grid (every key
    column is an image over queries). Each pass is a 2-D bicubic interpolation, so the result is the tensor-product
    bicubic interpolation of the 4-D table, which keeps smooth biases smooth in both grids.

    Bicubic passes run as products with PyTorch's interpolation matrices (:func:`~.traceable.bicubic_matrix`:
    the same taps and weights as ``F.interpolate``, equal to float rounding). The bias is resized in every training
    step (its table learns), and there the matrices matter: the backward of ``F.interpolate(mode='bicubic')`` is a
    scalar scatter loop on CPU, that of a matrix product a GEMM. The query pass multiplies along the query axis in
    place (:func:`_bicubic_over_rows`), so the result comes out in the (Nq, Nk) layout attention reads, without
    transposed copies of a whole (large) map in forward and backward.
    """
    lead = bias.shape[:-2]
    nq, nk = bias.shape[-2:]
    exporting = is_exporting()  # traced target grids: always resize (the identity at equal sizes)
    if not exporting and (nq != src_q_hw[0] * src_q_hw[1] or nk != src_k_hw[0] * src_k_hw[1]):
        raise ValueError(f'bias of shape {tuple(bias.shape)} does not match query grid {src_q_hw} and key grid '
                         f'{src_k_hw}')
    resize = traced_interpolate if exporting or mode == 'bicubic' else (
        lambda x, size, mode: F.interpolate(x, size=tuple(size), mode=mode, align_corners=False))
    out = bias.float().reshape(-1, nq, nk)
    groups = out.shape[0]
    if exporting or tuple(src_k_hw) != tuple(dst_k_hw):
        out = out.reshape(groups * nq, 1, *src_k_hw)
        out = resize(out, dst_k_hw, mode)
        out = out.reshape(groups, nq, -1)
    nk_new = out.shape[-1]
    if exporting or tuple(src_q_hw) != tuple(dst_q_hw):
        if exporting or mode == 'bicubic':
            out = _bicubic_over_rows(out, src_q_hw, dst_q_hw)
        else:
            out = out.transpose(1, 2).reshape(groups * nk_new, 1, *src_q_hw)
            out = resize(out, dst_q_hw, mode)
            out = out.reshape(groups, nk_new, -1).transpose(1, 2)
    return out.reshape(*lead, out.shape[-2], nk_new).to(bias.dtype)


def _bicubic_over_rows(x: torch.Tensor, src_hw: Size2d, dst_hw: Size2d) -> torch.Tensor:
    """Bicubic resize (``F.interpolate``'s, as matrix products) of the grid that the middle axis of ``x`` (G, sh*sw,
    N) is laid out on: (G, dh*dw, N), the last axis still innermost."""
    groups, n = x.shape[0], x.shape[-1]
    rows = bicubic_matrix(dst_hw[0], src_hw[0], device=x.device)  # (dh, sh)
    cols = bicubic_matrix(dst_hw[1], src_hw[1], device=x.device)  # (dw, sw)
    x = cols @ x.reshape(groups * src_hw[0], src_hw[1], n)  # along the grid's columns: (G*sh, dw, N)
    x = rows @ x.reshape(groups, src_hw[0], -1)  # along its rows: (G, dh, dw*N)
    return x.reshape(groups, -1, n)


def resize_relative_position_table(table: torch.Tensor, src_window: Size2d, dst_window: Size2d,
                                   mode: str = 'bicubic') -> torch.Tensor:
    """Resize a Swin-style relative position bias table ((2Wh-1)*(2Ww-1), heads) to another window size."""
    src = (2 * src_window[0] - 1, 2 * src_window[1] - 1)
    dst = (2 * dst_window[0] - 1, 2 * dst_window[1] - 1)
    if src == dst:
        return table
    heads = table.shape[1]
    grid = table.float().T.reshape(1, heads, *src)
    grid = F.interpolate(grid, size=dst, mode=mode, align_corners=False)
    return grid.reshape(heads, -1).T.contiguous().to(table.dtype)


def resize_1d_table(table: torch.Tensor, length: int, mode: str = 'linear') -> torch.Tensor:
    """Resize a (L, C) table along L (e.g. 1-D relative logits of length 2S-1) to ``length`` rows."""
    if not is_exporting() and table.shape[0] == length:  # (a traced length is always resized: identity if equal)
        return table
    out = F.interpolate(table.float().T.unsqueeze(0), size=length, mode=mode, align_corners=False)
    return out[0].T.contiguous().to(table.dtype)


class SizeCache:
    """Caches tensors derived from parameters for a given input size.

    The cache is only used when no gradient is recorded for the sources (inference, frozen parameters); during
    training the derived tensor must be recomputed because the parameters change every step. Entries are keyed by
    the size and by each source's storage and version counter, so in-place updates (optimizer steps,
    ``load_state_dict``) and ``.to()`` invalidate them. At most ``max_entries`` sizes are kept (mmdet's test pipeline
    keeps the aspect ratio, so sizes vary).
    """

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: 'OrderedDict[Hashable, torch.Tensor]' = OrderedDict()

    def get(self, size: Hashable, sources: Sequence[torch.Tensor], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if is_exporting() or (torch.is_grad_enabled() and any(s.requires_grad for s in sources)):
            return compute()  # (an export computes it in the graph, from the parameters, for the traced size)
        key = (size, ) + tuple((s.data_ptr(), s._version, s.dtype, s.device) for s in sources)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute()
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __deepcopy__(self, memo):  # copies of a model (EMA, deepcopy in tools) start with an empty cache
        return SizeCache(self.max_entries)

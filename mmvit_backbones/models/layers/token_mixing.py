"""Token mixing on the pretraining grid at any input size (MLP-Mixer, ResMLP).

MLP-Mixer's token MLP (``N -> D_S -> N``) and ResMLP's token linear layer (``N x N``) have weights indexed by the
N = gh0 x gw0 token positions of the pretraining image (14 x 14 for 224 px and patch 16). They cannot run on any other
token grid as they are, and a dense ``N x N`` operator for the ~4200 tokens of an 800x1333 image would be 17.6M
parameters per ResMLP block that nobody has trained. Two mechanisms reuse the published weights unchanged:

``'window'`` (the default; wins the comparison in the README):
    The token grid is cut into windows of the pretraining grid (gh0 x gw0 tokens) and the pretrained token operator
    runs inside every window, exactly as it ran on the whole 224 image: weight ``[i, j]`` still connects the window
    positions ``i`` and ``j``, so the weights keep their meaning (a 196-token window *is* a 224x224 crop). Over the
    whole grid this is a block-diagonal token-mixing matrix with one copy of the pretrained one per window (the
    Mixer paper's appendix on fine-tuning with more patches is reported to initialise the token MLP this way; not
    verified here). It is made any-size by two additions:

    * **padding that does not change the result.** A grid that is not a multiple of the window is zero-padded
      *after* the block's norm, right before the token operator. Zero inputs contribute nothing to a linear map, so
      the real tokens see exactly the operator restricted to the real positions (``W[valid, valid]``), whatever the
      amount of padding; the outputs at padded positions are cropped away.
    * **shifted windows.** In every second block (odd index) the windows are displaced by half a window along each
      axis on which the grid is longer than one window (the grid is padded by half a window in front), so that
      information crosses window borders, as in Swin's shifted windows. Along an axis that fits into one window there
      is nothing to connect and no shift, so at the pretraining size (one window, no shift, no padding) the
      computation is the official one, bit for bit.

    No parameter is added; the cost is linear in the number of tokens (padding included).

``'resample'`` (RaftMLP, Tatsunami & Taki, arXiv 2108.04384; okojoalg/raft-mlp ``Shrink``/``Expansion``):
    Before every token-mixing step the whole token grid is resized bicubically to the pretraining grid, the token
    sub-block runs there *including its residual* (as the published code does), and the result is resized back to
    the actual grid. At the pretraining size both resizes are skipped (exact). Every block thus passes the residual
    stream through a gh0 x gw0 bottleneck, which low-passes features of large images.

Both are driven by :func:`mix_tokens`; the backbone supplies the block's norm, its token operator (acting on dim 1 of
a ``(B', N0, C)`` tensor) and the residual scaling (layer scale, stochastic depth).
"""
import math
from typing import Callable, Tuple

import torch
import torch.nn.functional as F

from .traceable import Size2d, is_exporting, traced_interpolate

TOKEN_MIXING_MODES = ('window', 'resample')


def _window_pads(grid: int, window: int, shifted: bool) -> Tuple[int, int]:
    """(front, back) padding of one axis: whole windows, shifted by half a window when the axis spans several."""
    if isinstance(grid, torch.Tensor):  # a traced size (ONNX export): the same rule as graph arithmetic
        front = (grid > window).long() * (window // 2) if shifted else 0
    else:
        front = window // 2 if shifted and grid > window else 0
    return front, (-(grid + front)) % window


def window_token_mixing(tokens: torch.Tensor, window_hw: Size2d, shifted: bool,
                        operator: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``operator`` ((B', wh*ww, C) -> same, mixing dim 1) within windows of a (B, gh, gw, C) token grid.

    Positions outside the grid are zeros at the operator's input (so they do not contribute) and are dropped from its
    output. Returns (B, gh, gw, C).
    """
    b, gh, gw, c = tokens.shape
    wh, ww = window_hw
    exporting = is_exporting()  # traced sizes: the general path (at the pretraining grid it pads by 0, 1 window)
    if not exporting and (gh, gw) == (wh, ww):  # the pretraining grid: one window, the official computation
        return operator(tokens.reshape(b, wh * ww, c)).reshape(b, gh, gw, c)
    (top, bottom), (left, right) = _window_pads(gh, wh, shifted), _window_pads(gw, ww, shifted)
    if exporting or top or bottom or left or right:
        tokens = F.pad(tokens, (0, 0, left, right, top, bottom))
    ph, pw = gh + top + bottom, gw + left + right
    nh, nw = ph // wh, pw // ww
    windows = tokens.reshape(b, nh, wh, nw, ww, c).transpose(2, 3).reshape(b * nh * nw, wh * ww, c)
    mixed = operator(windows)  # (B*nW, wh*ww, C), row-major positions inside each window as in the official model
    mixed = mixed.reshape(b, nh, nw, wh, ww, c).transpose(2, 3).reshape(b, ph, pw, c)
    return mixed[:, top:top + gh, left:left + gw]


def resize_token_grid(tokens: torch.Tensor, size: Size2d) -> torch.Tensor:
    """Bicubic resize of a (B, gh, gw, C) token grid to (B, size[0], size[1], C) (RaftMLP's Shrink/Expansion)."""
    if is_exporting():  # a traced size: always resize (the identity at the same size)
        return traced_interpolate(tokens.permute(0, 3, 1, 2), size, 'bicubic').permute(0, 2, 3, 1)
    if tuple(tokens.shape[1:3]) == tuple(size):
        return tokens
    grid = F.interpolate(tokens.permute(0, 3, 1, 2), size=tuple(size), mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1)


def mix_tokens(tokens: torch.Tensor, mode: str, window_hw: Size2d, shifted: bool,
               norm: Callable[[torch.Tensor], torch.Tensor], operator: Callable[[torch.Tensor], torch.Tensor],
               residual: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One token-mixing sub-block ``x + residual(operator(norm(x)))`` on a (B, gh, gw, C) grid of any size.

    Args:
        mode: ``'window'`` or ``'resample'`` (module docstring).
        window_hw: the pretraining token grid (gh0, gw0) the operator was trained on.
        shifted: shift the windows by half a window (``'window'`` mode; odd blocks).
        norm: the per-token norm before mixing (LayerNorm / Affine).
        operator: the token operator, (B', gh0*gw0, C) -> (B', gh0*gw0, C), mixing dim 1.
        residual: what the branch output goes through before the addition (layer scale, drop path).
    """
    if mode == 'window':
        return tokens + residual(window_token_mixing(norm(tokens), window_hw, shifted, operator))
    if mode == 'resample':
        size = tuple(tokens.shape[1:3])
        small = resize_token_grid(tokens, window_hw)
        b, wh, ww, c = small.shape
        small = small + residual(operator(norm(small).reshape(b, wh * ww, c)).reshape(b, wh, ww, c))
        return resize_token_grid(small, size)
    raise ValueError(f'token mixing mode must be one of {TOKEN_MIXING_MODES}, got {mode!r}')


def num_windows(grid_hw: Size2d, window_hw: Size2d, shifted: bool) -> int:
    """How many windows :func:`window_token_mixing` runs for a grid (for cost estimates and tests)."""
    count = 1
    for grid, window in zip(grid_hw, window_hw):
        front, back = _window_pads(grid, window, shifted)
        count *= math.ceil((grid + front + back) / window)
    return count

"""Transformer pieces shared by the backbones: the plain ViT attention/block and the official init.

The feed-forward (``fc1 -> GELU -> fc2``, key names as in the official checkpoints) is timm's ``Mlp``.
* :class:`ViTAttention` / :class:`ViTBlock`: the pre-norm ViT block (DINO/timm layout: ``norm1``, ``attn.qkv``,
  ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``) of PlainViT and T2T-ViT, with optional ViTDet-style windowed
  attention in which the leading (cls) tokens stay global.
* :func:`init_linear_and_layernorm` / :func:`init_conv_fan_out`: the official initialisations, for
  ``Module.apply``.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_

from .attention import attention
from .traceable import Size2d, ceil_div, is_exporting


def init_linear_and_layernorm(module: nn.Module) -> None:
    """The official ViT-family initialisation of one module (``model.apply(init_linear_and_layernorm)``):
    truncated normal (std .02) Linear weights and zero biases, LayerNorm weight 1 and bias 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_conv_fan_out(module: nn.Module) -> None:
    """The PVT-family official Conv2d initialisation (Shunted, PyramidTNT): normal with std ``sqrt(2 / fan_out)``
    (fan_out = k_h * k_w * out_channels / groups), zero bias. Other modules are left as they are."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def window_partition(t: torch.Tensor, grid_hw: Size2d, window: int) -> Tuple[torch.Tensor, Size2d]:
    """(B, heads, gh*gw, d) grid tokens -> (B*nW, heads, window*window, d) windows of the zero-padded grid.

    Returns the windows (row-major per image) and the padded grid size.
    """
    b, heads, _, d = t.shape
    gh, gw = grid_hw
    ph, pw = ceil_div(gh, window) * window, ceil_div(gw, window) * window
    t = t.reshape(b, heads, gh, gw, d)
    if is_exporting() or (ph, pw) != (gh, gw):  # (traced sizes: always pad, possibly by 0)
        t = F.pad(t, (0, 0, 0, pw - gw, 0, ph - gh))
    t = t.reshape(b, heads, ph // window, window, pw // window, window, d)
    t = t.permute(0, 2, 4, 1, 3, 5, 6)  # (B, nh, nw, heads, window, window, d)
    return t.reshape(-1, heads, window * window, d), (ph, pw)


def window_unpartition(t: torch.Tensor, batch: int, grid_hw: Size2d, padded_hw: Size2d, window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B*nW, heads, window*window, d) -> (B, heads, gh*gw, d)."""
    heads, d = t.shape[1], t.shape[-1]
    (gh, gw), (ph, pw) = grid_hw, padded_hw
    t = t.reshape(batch, ph // window, pw // window, heads, window, window, d)
    t = t.permute(0, 3, 1, 4, 2, 5, 6).reshape(batch, heads, ph, pw, d)
    return t[:, :, :gh, :gw].reshape(batch, heads, gh * gw, d)


class ViTAttention(nn.Module):
    """Multi-head self-attention of a plain ViT (fused ``qkv`` and ``proj``), global or windowed.

    The leading ``num_extra_tokens`` tokens (cls) always attend globally. With ``window_size > 0`` (ViTDet) the grid
    tokens attend to their ``window_size`` x ``window_size`` window plus the extra tokens; the grid is padded to
    whole windows and the padded keys are masked (ViTDet lets zero-padded keys take part instead; masking makes the
    result independent of the padding). No weight depends on the window, so the same checkpoints load.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, window_size: int = 0,
                 num_extra_tokens: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.window_size = window_size
        self.num_extra_tokens = num_extra_tokens
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid_hw: Size2d) -> torch.Tensor:
        b, n, c = x.shape  # n = num_extra_tokens + gh * gw
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, d)
        if self.window_size > 0:
            out = self._windowed(q, k, v, tuple(grid_hw))
        else:
            out = self.core(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of queries (B, heads, Nq, d) over keys/values (B, heads, Nk, d); ``bias`` is 0 or -inf (a
        masked key). Variants with another attention rule (DeepViT's re-attention) override only this."""
        return attention(q, k, v, bias)

    def _windowed(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid_hw: Size2d) -> torch.Tensor:
        b, heads, _, d = q.shape
        ws, extra = self.window_size, self.num_extra_tokens
        extra_out = self.core(q[:, :, :extra], k, v)  # (B, heads, extra, d): the cls token sees everything
        qw, padded_hw = window_partition(q[:, :, extra:], grid_hw, ws)
        kw, _ = window_partition(k[:, :, extra:], grid_hw, ws)
        vw, _ = window_partition(v[:, :, extra:], grid_hw, ws)
        num_windows = qw.shape[0] // b

        def with_extra(t_windows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # prepend the extra tokens' keys/values to every window: (B*nW, heads, extra + ws*ws, d)
            t_extra = t[:, None, :, :extra].expand(b, num_windows, heads, extra, d)
            return torch.cat([t_extra.reshape(b * num_windows, heads, extra, d), t_windows], dim=2)

        kw, vw = with_extra(kw, k), with_extra(vw, v)
        bias = None
        if is_exporting() or padded_hw != grid_hw:  # keys in the padding must not be attended to
            rows, cols = (torch.arange(n, device=q.device) for n in padded_hw)
            valid = (rows[:, None] < grid_hw[0]) & (cols[None, :] < grid_hw[1])  # (ph, pw)
            valid, _ = window_partition(valid.reshape(1, 1, -1, 1).float(), padded_hw, ws)  # (nW, 1, ws*ws, 1)
            valid = torch.cat([valid.new_ones(num_windows, extra), valid[:, 0, :, 0]], dim=1) > 0
            bias = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill(~valid, float('-inf'))
            bias = bias[:, None, None, :].repeat(b, 1, 1, 1)  # (B*nW, 1, 1, extra + ws*ws)
        out = self.core(qw, kw, vw, bias)  # (B*nW, heads, ws*ws, d)
        return torch.cat([extra_out, window_unpartition(out, b, grid_hw, padded_hw, ws)], dim=2)


class ViTBlock(nn.Module):
    """Pre-norm transformer block (DINO/timm ``Block``): x + attn(norm1(x)), then x + mlp(norm2(x)), with stochastic
    depth on both branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6, window_size: int = 0, num_extra_tokens: int = 1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = ViTAttention(dim, num_heads, qkv_bias=qkv_bias, window_size=window_size,
                                 num_extra_tokens=num_extra_tokens)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid_hw: Size2d) -> torch.Tensor:  # (B, extra + gh*gw, D)
        x = x + self.drop_path(self.attn(self.norm1(x), grid_hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))

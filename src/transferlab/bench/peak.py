"""The device's dense matmul peak, measured in the same run, for MFU."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def _best_rate(fn, flops: float, device: torch.device, reps: int = 5, trials: int = 3) -> float:
    fn()
    best = 0.0
    for _ in range(trials):
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        best = max(best, flops * reps / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> dict:
    """Dense matmul FLOP/s: fp32 on a CPU, bf16 on CUDA; the best of the ways tried."""
    out = {}
    if device.type == "cuda":
        n = 8192
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        out["mm bf16 8192"] = _best_rate(lambda: a @ b, 2 * n**3, device, reps=20)
        dtype = "bf16"
    else:
        for n in (2048, 4096):
            a, b = torch.randn(n, n), torch.randn(n, n)
            out[f"mm fp32 {n} (MKL)"] = _best_rate(lambda: a @ b, 2 * n**3, device, reps=3 if n > 2048 else 8)
        # oneDNN's GEMM (a 1x1 convolution is a [HW, Cin] x [Cin, Cout] matmul) is faster than
        # MKL on some CPUs; the convolutions run on oneDNN, so the peak must include it.
        c, hw = 2048, 64
        x = torch.randn(1, c, hw, hw).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 1, 1).contiguous(memory_format=torch.channels_last)
        out[f"matmul fp32 {hw * hw}x{c}x{c} (oneDNN)"] = _best_rate(lambda: F.conv2d(x, w), 2 * c * c * hw * hw, device)
        dtype = "fp32"
    return {"flops": max(out.values()), "dtype": dtype, "measured": out}

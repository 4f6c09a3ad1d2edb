"""Linear probes: how linearly decodable the classes are from the frozen activations of one unit.

Alain & Bengio (2016): a softmax classifier trained on a unit's (pooled) activations of a trained
network is a cheap per-layer estimate, with no fine-tuning. The regularisation is chosen on a
held-out part of the training set, so validation is touched once, by the final probe.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import torch
import torch.nn.functional as F


def pool(h: torch.Tensor, max_features: int = 4096) -> torch.Tensor:
    """(N, ...) activations of one unit -> (N, D) float32 features, D <= max_features where the
    shape allows. 2D (N, D): unchanged (cast to float32). 4D conv maps (N, C, H, W): adaptive
    average pooling to k x k with the largest k <= min(H, W) such that C*k*k <= max_features
    (k = 1 at least, i.e. global average pooling when even that is too big), then flattened.
    3D token sequences (N, T, D) (ViT): adaptive average pooling over the token axis, in order,
    to the largest k <= T groups with D*k <= max_features (k >= 1), flattened. Other ranks:
    ValueError naming the shape."""
    h = h.detach().float()  # pool in float32: half-precision sums over large maps lose digits
    if h.dim() == 2:
        return h
    if h.dim() == 4:
        _, c, hh, ww = h.shape
        k = _largest_k(min(hh, ww), c, max_features, squared=True)
        return F.adaptive_avg_pool2d(h, k).flatten(1)
    if h.dim() == 3:
        _, t, d = h.shape
        k = _largest_k(t, d, max_features, squared=False)
        # (N, T, D) -> (N, D, k) groups of consecutive tokens -> (N, k, D): group-major, so that
        # with k = T the features are h.flatten(1) itself.
        return F.adaptive_avg_pool1d(h.transpose(1, 2), k).transpose(1, 2).flatten(1)
    raise ValueError(f"pool: activations of shape {tuple(h.shape)} are not supported; "
                     "expected (N, D), (N, T, D) tokens or (N, C, H, W) maps")


def _largest_k(limit: int, width: int, max_features: int, squared: bool) -> int:
    """The largest k in 1..limit with width * k (or k*k) <= max_features; 1 if none fits."""
    k = max(limit, 1)
    while k > 1 and width * (k * k if squared else k) > max_features:
        k -= 1
    return k


METHODS = ("ridge", "softmax")


def fit_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
              num_classes: int, *, l2: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
              holdout: float = 0.2, max_iter: int = 100, seed: int = 0, method: str = "softmax") -> dict:
    """A linear probe on standardised features: ``softmax`` regression (mean cross-entropy +
    l2/2 ||W||^2, full-batch L-BFGS) or ``ridge`` regression onto one-hot targets (mean squared
    error + l2 ||W||^2, closed form by Cholesky: several times cheaper, no probabilities, so its
    losses are squared errors and val_loss is None). The l2 penalty is chosen on held-out training
    rows (best top-1, then lower loss, then larger l2), the probe refitted on all training rows
    and evaluated once on validation. Returns plain values."""
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not valid; allowed: {', '.join(METHODS)}")
    l2s = _check(train_x, train_y, val_x, val_y, num_classes, l2, holdout, max_iter)
    x = train_x.detach().float()
    y = train_y.long().to(x.device)
    n, d = x.shape
    fit = _softmax_path if method == "softmax" else _ridge_path
    state = (torch.zeros(d, num_classes, device=x.device), torch.zeros(num_classes, device=x.device))

    search, held, chosen = [], 0, l2s[0]
    if len(l2s) > 1:
        held = max(1, round(holdout * n))
        if n - held < 2:
            raise ValueError(f"holdout={holdout} leaves {n - held} of {n} training rows; need >= 2")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
        fit_x, fit_y, hold_x, hold_y = x[perm[held:]], y[perm[held:]], x[perm[:held]], y[perm[:held]]
        stats = _standardiser(fit_x)
        hold_z = _apply(stats, hold_x)
        solutions = dict(zip(l2s, fit(_apply(stats, fit_x), fit_y, num_classes, l2s, state, max_iter)))
        for lam, (W, b, iters) in solutions.items():
            top1, _, loss = _evaluate(hold_z, hold_y, W, b, method)
            search.append({"l2": lam, "holdout_top1": top1, "holdout_loss": loss, "iterations": iters})
        best = max(search, key=lambda s: (s["holdout_top1"], -s["holdout_loss"], s["l2"]))
        chosen = best["l2"]
        state = solutions[chosen][:2]

    stats = _standardiser(x)
    z = _apply(stats, x)
    W, b, iters = fit(z, y, num_classes, [chosen], state, max_iter)[0]
    train_top1, _, train_loss = _evaluate(z, y, W, b, method)
    val_top1, val_top5, val_loss = _evaluate(_apply(stats, val_x.detach().float().to(x.device)),
                                             val_y.long().to(x.device), W, b, method)
    softmax = method == "softmax"
    return {"metrics": {"val_top1": val_top1, "val_top5": val_top5, "val_loss": val_loss if softmax else None,
                        "train_top1": train_top1, "train_loss": train_loss if softmax else None,
                        **({} if softmax else {"val_mse": val_loss, "train_mse": train_loss})},
            "method": method, "l2": chosen, "search": search, "features": d, "train_images": n,
            "holdout_images": held, "iterations": iters,
            "fit_time": time.perf_counter() - start}


def _check(train_x, train_y, val_x, val_y, num_classes, l2, holdout, max_iter) -> list[float]:
    """ValueError for any argument fit_probe cannot use; the l2 values, distinct, largest first."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout={holdout} must be in (0, 1)")
    l2 = [float(v) for v in l2]
    if not l2 or not all(math.isfinite(v) and v > 0 for v in l2):
        raise ValueError(f"l2={tuple(l2)} must be a non-empty sequence of finite values > 0")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} must be >= 2")
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter} must be >= 1")
    for name, x, y in (("train", train_x, train_y), ("val", val_x, val_y)):
        if x.dim() != 2 or y.dim() != 1 or len(x) != len(y):
            raise ValueError(f"{name}_x of shape {tuple(x.shape)} and {name}_y of shape "
                             f"{tuple(y.shape)}: need (N, D) features and N labels")
        if len(x) == 0:
            raise ValueError(f"{name}_x has no rows")
        if y.dtype.is_floating_point or y.dtype.is_complex:
            raise ValueError(f"{name}_y has dtype {y.dtype}; labels must be integers")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name}_y has labels in {lo}..{hi}; allowed 0..{num_classes - 1}")
        if not torch.isfinite(x).all():  # NaN activations would silently give a chance probe
            raise ValueError(f"{name}_x has non-finite values")
    if val_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"val_x has {val_x.shape[1]} features, train_x {train_x.shape[1]}")
    if len(train_x) < 2:
        raise ValueError(f"train_x has {len(train_x)} rows; need >= 2")
    return sorted(set(l2), reverse=True)


def _standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per feature; constant (e.g. dead ReLU) features get std 1 in effect."""
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def _apply(stats, x: torch.Tensor) -> torch.Tensor:
    mean, std = stats
    return (x - mean) / std


def _softmax_path(z, y, num_classes, l2s, state, max_iter):
    """[(W, b, iterations)] for each l2 in order (largest first: each fit starts from the smoother
    solution before it, a regularisation path). Iterations: L-BFGS's state["n_iter"], not the
    function evaluations its line search makes more of."""
    out, (W, b) = [], state
    for lam in l2s:
        W, b, iters = _fit(z, y, W, b, lam, max_iter)
        out.append((W, b, iters))
    return out


def _fit(z, y, W0, b0, l2: float, max_iter: int):
    """Minimise mean CE + l2/2 ||W||^2 from (W0, b0) with L-BFGS."""
    W = W0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ W + b, y) + 0.5 * l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach(), int(opt.state[W].get("n_iter", 0))


@torch.no_grad()
def _ridge_path(z, y, num_classes, l2s, state, max_iter):
    """[(W, b, 0)] for each l2: minimise mean ||z W + b - onehot(y)||^2 + l2 ||W||^2, i.e.
    W = (z^T z + N l2 I)^-1 z^T (Y - mean Y), b = mean Y (z is centred). One Gram matrix for every
    l2, a Cholesky solve in float64 each (small penalties leave it ill-conditioned in float32)."""
    n, d = z.shape
    Y = F.one_hot(y, num_classes).to(z.dtype)
    b = Y.mean(0)
    G = (z.T @ z).double()  # a float32 product: 2x cheaper, exact enough unless nearly singular
    R = (z.T @ (Y - b)).double()
    eye = torch.eye(d, dtype=torch.float64, device=z.device)
    out = []
    for lam in l2s:
        L, info = torch.linalg.cholesky_ex(G + n * lam * eye)
        if info.item() != 0:  # float32 rounding made G + n l2 I indefinite (more features than rows, a
            z64 = z.double()  # small l2): the Gram matrix in float64 is positive semi-definite
            G = z64.T @ z64
            L = torch.linalg.cholesky(G + n * lam * eye)
        out.append((torch.cholesky_solve(R, L).to(z.dtype), b, 0))
    return out


@torch.no_grad()
def _evaluate(z, y, W, b, method: str = "softmax") -> tuple[float, float, float]:
    """Top-1, top-min(5, C) accuracy and the loss without the penalty (softmax: mean cross-entropy;
    ridge: mean squared error to the one-hot targets, summed over classes), as plain floats."""
    logits = z @ W + b
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = (topk[:, 0] == y).float().mean().item()
    top5 = (topk == y[:, None]).any(1).float().mean().item()
    if method == "ridge":
        return top1, top5, (logits - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).sum(1).mean().item()
    return top1, top5, F.cross_entropy(logits, y).item()

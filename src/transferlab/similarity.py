"""Centred kernel alignment (CKA) between two networks' representations of the same images.

Kornblith et al. 2019 compare representations by the alignment of their Gram matrices; the
closed form needs all N examples at once, an N x N matrix per layer. Nguyen, Raghu & Kornblith
2021 instead sum the unbiased HSIC estimator of Song et al. 2012 over minibatches, so memory is
bounded by the batch size. The unbiased estimator matters: the biased one on a minibatch of m
examples is inflated by O(1/m) even for independent representations, and summing batches does
not average that bias away. Everything is float64 on the inputs' own device: the estimator
subtracts terms of similar size, and bf16/float32 activations would lose the difference.
"""
from __future__ import annotations

import torch

KERNELS = ("linear", "rbf")
MIN_BATCH = 4  # hsic1 divides by m (m - 3) and (m - 2)


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; allowed: {', '.join(KERNELS)}")


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(m, ...) -> (m, features) in float64: a conv map's channels and positions are features."""
    return x.reshape(x.shape[0], -1).to(torch.float64)


def gram(x: torch.Tensor, kernel: str = "linear", sigma: float = 0.8) -> torch.Tensor:
    """(m, ...) activations -> (m, m) Gram matrix in float64. Activations are flattened per example
    (x.reshape(m, -1)). linear: X X^T. rbf: exp(-d^2 / (2 s^2)) with s = sigma * median of the
    non-zero pairwise distances within the batch (Kornblith et al.'s choice)."""
    _check_kernel(kernel)
    x = _flat(x)
    dot = x @ x.T
    if kernel == "linear":
        return dot
    sq = dot.diagonal()
    # Via the dot products rather than cdist: one matmul, and exactly symmetric.
    d2 = (sq[:, None] + sq[None, :] - 2 * dot).clamp_min(0)
    d2 = (d2 + d2.T) / 2
    d2.fill_diagonal_(0)
    i, j = torch.triu_indices(len(x), len(x), 1, device=x.device)
    off = d2[i, j]  # each pair once; torch.median takes the lower middle of an even count
    off = off[off > 0]
    # A bandwidth relative to the batch's own spread makes the kernel invariant to scaling.
    # With all examples identical every distance is 0 and the kernel is all ones whatever s is.
    med2 = off.median() if off.numel() else torch.ones((), dtype=x.dtype, device=x.device)
    return torch.exp(-d2 / (2 * sigma**2 * med2))  # median of d^2 = (median of d)^2


def hsic1(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of Song et al. 2012 (needs m >= 4): diagonals set to 0, then
    [tr(K~L~) + 1^T K~ 1 * 1^T L~ 1 / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m(m-3))."""
    m = K.shape[0]
    if m < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} examples, got m={m}")
    K = K.to(torch.float64).clone().fill_diagonal_(0)
    L = L.to(torch.float64).clone().fill_diagonal_(0)
    trace = (K * L.T).sum()
    ones = K.sum() * L.sum() / ((m - 1) * (m - 2))
    cross = K.sum(0) @ L.sum(1)  # 1^T K~ L~ 1 without forming K~ L~
    return (trace + ones - 2 * cross / (m - 2)) / (m * (m - 3))


class MinibatchCKA:
    """Accumulates minibatch CKA between representation X and Y of the same examples.
    update(x, y): x and y hold the same m examples (m >= 4; raise ValueError naming m otherwise;
    also ValueError if their first dimensions differ). value() -> float (ValueError if nothing
    was added). Also exposes .batches (int) and .examples (int)."""

    def __init__(self, kernel: str = "linear", sigma: float = 0.8):
        _check_kernel(kernel)  # fail at construction, not after an epoch of activations
        self.kernel, self.sigma = kernel, sigma
        self.batches = self.examples = 0
        self._xy = self._xx = self._yy = None

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must hold the same examples: first dimensions "
                             f"{x.shape[0]} and {y.shape[0]} differ")
        m = x.shape[0]
        if m < MIN_BATCH:
            raise ValueError(f"a batch needs at least {MIN_BATCH} examples, got m={m}")
        K = gram(x, self.kernel, self.sigma)
        L = gram(y, self.kernel, self.sigma)
        terms = (hsic1(K, L), hsic1(K, K), hsic1(L, L))
        if self._xy is None:
            self._xy, self._xx, self._yy = terms
        else:
            self._xy, self._xx, self._yy = (a + b for a, b in zip((self._xy, self._xx, self._yy),
                                                                  terms))
        self.batches += 1
        self.examples += m

    def value(self) -> float:
        """Sum of cross terms over the geometric mean of the self terms. nan when either
        representation is constant over every batch: there is then nothing to align."""
        if self._xy is None:
            raise ValueError("no batches were added (batches=0): call update() first")
        return float(self._xy / torch.sqrt(self._xx * self._yy))


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", batch_size: int | None = None,
        sigma: float = 0.8) -> float:
    """CKA of two (N, ...) representations of the same N examples; batch_size None: one batch of
    all N (still the unbiased estimator); otherwise consecutive minibatches of batch_size (a last
    batch smaller than 4 examples is merged into the previous one)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: first dimensions "
                         f"{x.shape[0]} and {y.shape[0]} differ")
    n = x.shape[0]
    if batch_size is not None and batch_size < MIN_BATCH:
        raise ValueError(f"batch_size must be at least {MIN_BATCH}, got {batch_size}")
    step = n if batch_size is None else batch_size
    starts = list(range(0, n, step)) or [0]
    if len(starts) > 1 and n - starts[-1] < MIN_BATCH:
        starts.pop()  # too few for hsic1 on its own: the previous batch takes them
    acc = MinibatchCKA(kernel, sigma)
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else n
        acc.update(x[s:e], y[s:e])
    return acc.value()


def linear_cka_biased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The closed-form full-batch linear CKA of Kornblith et al. 2019 (centred features,
    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)): the reference the tests compare against."""
    x, y = _flat(x), _flat(y)
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(num / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))

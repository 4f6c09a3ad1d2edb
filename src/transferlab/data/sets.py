"""A dataset's images: in memory (ImageSet) or on disk (FileSet), and helpers every loader uses."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError


@dataclass
class ImageSet:
    """Images held in memory as uint8 [N, C, H, W] with int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, keep: torch.Tensor, y: torch.Tensor) -> "ImageSet":
        return ImageSet(self.x[keep], y)


@dataclass
class FileSet:
    """Images left on disk (datasets too big for memory), decoded by DataLoader workers.

    Paths are relative to ``root`` in a numpy bytes array: no Python object per image, so the
    forked workers share it instead of copying it page by page as refcounts change.
    """

    root: str
    files: np.ndarray
    y: torch.Tensor
    num_workers: int = 2

    def __len__(self) -> int:
        return len(self.y)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i].decode())

    def subset(self, keep: torch.Tensor, y: torch.Tensor) -> "FileSet":
        return FileSet(self.root, self.files[keep.numpy()], y, self.num_workers)


def first_per_class(y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first ``k`` images of every class, in their original order."""
    if k < 1:
        raise ConfigError(f"images per class must be >= 1, got {k}")
    order = torch.argsort(y, stable=True)
    ys = y[order]
    starts = torch.searchsorted(ys, ys, right=False)  # first position of each image's class
    rank = torch.arange(len(y)) - starts
    return order[rank < k].sort().values


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N, C, H, W], on the 0..1 scale (in chunks:
    no float copy of the whole set)."""
    s = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for i in range(0, len(x), chunk):
        xf = x[i:i + chunk].to(torch.float64).div_(255)
        s += xf.sum((0, 2, 3))
        s2 += xf.square().sum((0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = ((s2 - n * mean.square()) / max(1, n - 1)).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())

"""The frozen-prefix feature cache: train the upper layers of a frozen cell from activations
computed once.

A frozen cell's layers 1..n never change. When the input pipeline is deterministic (no random
crops or flips), those layers map an image to the same activations in every epoch, so we
compute them once per cell and train layers n+1..L from them. Shuffling draws from the same
generator as the uncached batches and dropout draws from the same global generator, so the
trained weights are bit-identical on a CPU; the cache builder checks that on a sample batch and
falls back to the uncached path where they would not be.

The cache ends at the last frozen layer without dropout (CaffeNet: layer min(n, 5)): the
dropout of layers 6 and 7 draws fresh masks every step, so it stays on the fly.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch
from torch import nn

from .batches import TensorBatches
from .data import ImageSet
from .models.dropout import Dropout
from .schema import check_group

# How far cached activations may stray from the uncached ones: on a CPU not at all (the cached
# path is then bit-identical); on CUDA kernels may depend on the batch, so a relative tolerance
# per precision (TF32 convolutions for fp32, 8-bit mantissas for bf16).
TOLERANCE = {"cpu": 0.0, "fp32": 1e-3, "bf16": 2e-2, "fp16": 5e-3}


class FeatureBatches(TensorBatches):
    """Batches of cached layer-``start`` activations, drawn exactly as ``TensorBatches`` draws
    images (same permutation, same batches); the model resumes at layer ``start + 1``."""

    def __init__(self, train: ImageSet, val: ImageSet, device: torch.device, batch_size: int,
                 start: int, eval_batch_size: int):
        super().__init__(train, val, (0.0,), (1.0,), device, batch_size)
        self.start, self.eval_batch_size = start, eval_batch_size
        self.model_kwargs = {"start": start}

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def eval_batches(self, batch_size: int | None = None):
        # Same chunks as the images were evaluated in, so evaluation is unchanged too.
        yield from super().eval_batches(batch_size or self.eval_batch_size)


def tolerance(device: torch.device, precision: str) -> float:
    return TOLERANCE["cpu"] if device.type == "cpu" else TOLERANCE.get(precision, TOLERANCE["fp32"])


def cache_depth(model: nn.Module, frozen_layers: int) -> int:
    """How many leading frozen layers are a deterministic function of the image."""
    depth = 0
    for layer in model.layers[:frozen_layers]:
        if any(isinstance(m, (nn.Dropout, Dropout)) for m in layer.modules()):
            break
        depth += 1
    return depth


def _memory_budget(device: torch.device) -> int:
    """Bytes the cache may take: half the free GPU memory, a quarter of the free RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2 << 30


@torch.no_grad()
def _prefix(model, x: torch.Tensor, depth: int, autocast) -> torch.Tensor:
    with autocast():
        return model.forward_prefix(x, depth)


def _format(h: torch.Tensor) -> torch.memory_format:
    if h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def feature_batches(model, batches, frozen_layers: int, mode, autocast: Callable = contextlib.nullcontext,
                    log: Callable[[str], None] = print, eval_batch_size: int = 1000, precision: str = "fp32"):
    """``batches`` itself, or FeatureBatches over the activations of the frozen prefix.

    Whether the cached path computes what the uncached one would is checked on a shuffled
    training batch on every device: bit for bit on a CPU, within TOLERANCE on CUDA. mode:
    "auto" caches when the input pipeline is deterministic, the features fit in memory and the
    check passes (else trains uncached, saying why); True the same, but a failed check is an
    error; "force" caches even when the check fails; False never caches.
    """
    check_group("train", {"feature_cache": mode})
    if mode is False or frozen_layers == 0:
        return batches
    random_input = not isinstance(batches, TensorBatches) or not batches.deterministic
    if random_input or isinstance(batches, FeatureBatches):
        if mode in (True, "force") and not isinstance(batches, FeatureBatches):
            raise ValueError(f"train.feature_cache={str(mode).lower()} needs in-memory data without random crops "
                             "or flips (data.augment); use auto or false")
        return batches
    depth = cache_depth(model, frozen_layers)
    if depth == 0:
        return batches
    B = batches.batch_size
    sample = _prefix(model, batches.normalise(batches.train.x[:1]), depth, autocast)
    need = (len(batches.train) + len(batches.val)) * sample[0].numel() * sample.element_size()
    if mode == "auto" and need > _memory_budget(batches.device):
        log(f"feature cache off: {need / 2**30:.1f} GiB of layer-{depth} features do not fit")
        return batches
    was_training = model.training
    model.train()
    train_h = _activations(model, batches, batches.train, B, True, depth, autocast)
    model.eval()  # the chunks evaluate() uses
    val_h = _activations(model, batches, batches.val, eval_batch_size, False, depth, autocast)
    diff, tol = _mismatch(model, batches, train_h, depth, autocast), tolerance(batches.device, precision)
    model.train(was_training)
    check = {"max_relative_difference": diff, "tolerance": tol, "exact": diff <= tol}
    if not check["exact"]:
        why = (f"the frozen layers' outputs depend on the batch here (cached and uncached activations differ by "
               f"up to {diff:.2g} of their range, tolerance {tol:g})")
        if mode == "auto":
            log(f"feature cache off: {why}")
            return batches
        if mode is True:
            raise ValueError(f"train.feature_cache=true: {why}; use train.feature_cache=force to cache anyway, "
                             f"or auto (train uncached)")
        log(f"warning: feature cache forced although {why}")
    feats = FeatureBatches(ImageSet(train_h, batches.train.y), ImageSet(val_h, batches.val.y),
                           batches.device, B, depth, eval_batch_size)
    feats.check = check
    return feats


@torch.no_grad()
def _activations(model, batches: TensorBatches, s: ImageSet, chunk: int, pad: bool, depth: int,
                 autocast) -> torch.Tensor:
    """Layer-``depth`` activations of every image of ``s``, in chunks of ``chunk`` images. With
    ``pad`` the last chunk is filled up with images from the start (their outputs dropped): the
    prefix sees the batch shape it sees in training."""
    out, N = None, len(s)
    for i in range(0, N, chunk):
        x = s.x[i:i + chunk]
        real = len(x)
        if pad and real < chunk <= N:
            x = torch.cat([x, s.x[:chunk - real]])
        h = _prefix(model, batches.normalise(x), depth, autocast)[:real]
        if out is None:
            out = torch.empty((N, *h.shape[1:]), dtype=h.dtype, device=h.device, memory_format=_format(h))
        out[i:i + real] = h
    return out


@torch.no_grad()
def _mismatch(model, batches: TensorBatches, train_h: torch.Tensor, depth: int, autocast) -> float:
    """How far a shuffled training batch's activations are from the cached ones: the largest
    absolute difference over the largest absolute activation (0.0 when bit-identical)."""
    n = min(len(batches.train), batches.batch_size)
    idx = torch.randperm(len(batches.train), generator=torch.Generator().manual_seed(0))[:n]
    idx = idx.to(batches.device)
    model.train()
    fresh, cached = _prefix(model, batches.normalise(batches.train.x[idx]), depth, autocast).float(), train_h[idx].float()
    if torch.equal(fresh, cached):
        return 0.0
    return float((fresh - cached).abs().max() / cached.abs().max().clamp_min(1e-30))

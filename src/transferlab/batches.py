"""Batch sources: where a trainer's batches come from. Images in memory are held once on the
device as uint8 (TensorBatches); images on disk are decoded by DataLoader workers
(LoaderBatches). Both, and features.FeatureBatches, satisfy the BatchSource protocol.
"""
from __future__ import annotations

from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

from .data import FileSet, ImageSet, Task
from .data.folder import read_resized
from .machine import cpu_cores


class BatchSource(Protocol):
    """What train() and evaluate() need of a batch source: float images normalised on the
    device and int64 labels, ``steps_per_epoch`` training batches of ``batch_size`` per epoch
    drawn from a generator, the validation batches, and ``model_kwargs``: keyword arguments for
    the model's forward (FeatureBatches: ``{"start": n}``, its batches enter above layer n)."""

    device: torch.device
    batch_size: int
    steps_per_epoch: int
    model_kwargs: dict = {}

    def epoch(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def augment(x: torch.Tensor, crop_padding: int, flip: bool, g: torch.Generator, size: int | None = None) -> torch.Tensor:
    """A random ``size`` x ``size`` crop (default: the images' own size) of the zero-padded
    images and a horizontal flip, batched, on x's device: both are one gather from the padded
    images (each output pixel's source row and column), which is 20x faster on a CPU than
    advanced indexing followed by ``where(flip(x), x)``."""
    B, C, H, W = x.shape
    p = int(crop_padding)
    Sy, Sx = (H, W) if size is None else (int(size), int(size))   # the output's side
    span_y, span_x = H + 2 * p - Sy, W + 2 * p - Sx                  # offsets 0..span of its corner
    if span_y or span_x:
        oy = torch.randint(0, span_y + 1, (B,), generator=g, device=g.device).to(x.device)
        ox = torch.randint(0, span_x + 1, (B,), generator=g, device=g.device).to(x.device)
    else:
        oy = ox = torch.zeros(B, dtype=torch.long, device=x.device)
    cols = torch.arange(Sx, device=x.device).expand(B, Sx)
    if flip:
        mask = (torch.rand(B, generator=g, device=g.device) < 0.5).to(x.device)
        cols = torch.where(mask[:, None], Sx - 1 - cols, cols)
    elif not (span_y or span_x) and (Sy, Sx) == (H, W):
        return x
    rows = oy[:, None] + torch.arange(Sy, device=x.device)
    src = (rows[:, :, None] * (W + 2 * p) + (ox[:, None] + cols)[:, None, :]).view(B, 1, Sy * Sx)
    xp = F.pad(x, (p, p, p, p)) if p else x
    return xp.reshape(B, C, -1).gather(2, src.expand(B, C, Sy * Sx)).view(B, C, Sy, Sx)


class TensorBatches:
    """Batches from images held once on the device as uint8: shuffling, normalisation, random
    crops and flips are batched tensor ops there, with no DataLoader worker processes.

    A BatchSource, as are LoaderBatches (image files) and features.FeatureBatches.
    """

    model_kwargs: dict = {}

    def __init__(self, train: ImageSet, val: ImageSet, mean, std, device: torch.device,
                 batch_size: int, crop_padding: int = 0, flip: bool = False, crop: int | None = None):
        self.train, self.val = train, val
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=device).view(shape)
        self.std = torch.tensor(std, device=device).view(shape)
        self.device, self.batch_size = device, int(batch_size)
        # crop: the side of the training crops (image folders: data.augment.crop of images held
        # at data.augment.resize); None: the images' own side.
        side = train.x.shape[-1]
        self.crop_padding, self.flip = int(crop_padding), bool(flip)
        self.crop = None if crop is None or int(crop) == side else int(crop)
        # Drop the last partial batch: every step sees the same batch size.
        self.steps_per_epoch = max(1, len(train) // self.batch_size)

    @property
    def deterministic(self) -> bool:
        """Every epoch feeds the very same images (no random crop or flip)."""
        return not (self.crop_padding or self.flip or self.crop)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255) - self.mean) / self.std

    def epoch(self, g: torch.Generator):
        B = self.batch_size
        perm = torch.randperm(len(self.train), generator=g, device=g.device).to(self.device)
        for b in range(self.steps_per_epoch):
            idx = perm[b * B:(b + 1) * B]
            x = self.train.x[idx]
            if not self.deterministic:
                x = augment(x, self.crop_padding, self.flip, g, self.crop)
            yield self.normalise(x), self.train.y[idx]

    def eval_batches(self, batch_size: int = 1000):
        for i in range(0, len(self.val), batch_size):
            yield self.normalise(self.val.x[i:i + batch_size]), self.val.y[i:i + batch_size]

    def plain_batches(self, which: str, batch_size: int = 1000):
        """The training or validation images in order, without augmentation (training images
        centre-cropped to the crop side, as validation's are): what a probe reads features of."""
        s = self.train if which == "train" else self.val
        for i in range(0, len(s), batch_size):
            x = s.x[i:i + batch_size]
            if which == "train" and self.crop:
                o = (x.shape[-1] - self.crop) // 2
                x = x[..., o:o + self.crop, o:o + self.crop]
            yield self.normalise(x), s.y[i:i + batch_size]


_DEVICE_CACHE: dict = {}


def on_device(s: ImageSet, device: torch.device) -> ImageSet:
    """``s`` moved to ``device`` once per process: every cell of a task shares the copy."""
    if s.x.device == device:
        return s
    key = (id(s), str(device))
    if key not in _DEVICE_CACHE:
        if len(_DEVICE_CACHE) >= 8:  # train and val of tasks A and B of a couple of splits
            _DEVICE_CACHE.pop(next(iter(_DEVICE_CACHE)))
        _DEVICE_CACHE[key] = (s, ImageSet(s.x.to(device), s.y.to(device)))
    return _DEVICE_CACHE[key][1]


class _Decoded(torch.utils.data.Dataset):
    """Image i of a FileSet as uint8 [H, W, 3] and its label, in the original (Caffe) recipe:
    resized to resize x resize (aspect ratio not kept), then a random crop x crop and a random
    mirror (training; drawn from (epoch seed, i), so no worker count or order changes them) or
    the centre crop (validation, ``seed=None``)."""

    def __init__(self, s: FileSet, resize: int, crop: int, flip: bool, seed: int | None):
        if crop > resize:
            raise ValueError(f"data.augment.crop={crop} is larger than data.augment.resize={resize}")
        self.s, self.resize, self.crop, self.flip, self.seed = s, resize, crop, flip, seed

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, i: int):
        import numpy as np

        a = read_resized(self.s.path(i), self.resize)
        r, c = self.resize, self.crop
        if self.seed is None:
            oy = ox = (r - c) // 2
            mirror = False
        else:
            rng = np.random.default_rng((self.seed, i))
            oy, ox = (int(v) for v in rng.integers(0, r - c + 1, 2))
            mirror = self.flip and rng.random() < 0.5
        a = a[oy:oy + c, ox:ox + c]
        return torch.from_numpy((a[:, ::-1] if mirror else a).copy()), int(self.s.y[i])


class LoaderBatches:
    """Batches of image files decoded by DataLoader worker processes (datasets too big for
    memory, e.g. ImageNet): uint8 images in pinned host memory, copied to the device without
    blocking and normalised there. A BatchSource, like TensorBatches."""

    model_kwargs: dict = {}

    def __init__(self, train: FileSet, val: FileSet, mean, std, device: torch.device,
                 batch_size: int, resize: int, crop: int, flip: bool):
        self.train, self.val = train, val
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.device, self.batch_size = device, int(batch_size)
        self.resize, self.crop, self.flip = int(resize), int(crop), bool(flip)
        self.steps_per_epoch = max(1, len(train) // self.batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        # [B, H, W, 3] -> [B, 3, H, W] is a channels_last view: no copy.
        return (x.permute(0, 3, 1, 2).float().div_(255) - self.mean) / self.std

    def _loader(self, s: FileSet, batch_size: int, seed: int | None):
        from torch.utils.data import DataLoader

        workers = min(int(s.num_workers), cpu_cores())  # more processes than cores only contend
        return DataLoader(
            _Decoded(s, self.resize, self.crop, self.flip, seed), batch_size=batch_size,
            shuffle=seed is not None, drop_last=seed is not None and len(s) >= batch_size,
            generator=torch.Generator().manual_seed(seed) if seed is not None else None,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None)

    def _to_device(self, loader):
        for x, y in loader:
            yield (self.normalise(x.to(self.device, non_blocking=True)),
                   y.to(self.device, non_blocking=True))

    def epoch(self, g: torch.Generator):
        seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
        yield from self._to_device(self._loader(self.train, self.batch_size, seed))

    def eval_batches(self, batch_size: int | None = None):
        yield from self._to_device(self._loader(self.val, batch_size or 2 * self.batch_size, None))

    def plain_batches(self, which: str, batch_size: int = 1000):
        """The training or validation images in order, centre-cropped, without mirroring."""
        s = self.train if which == "train" else self.val
        yield from self._to_device(self._loader(s, batch_size, None))


def make_batches(task: Task, mean, std, device: torch.device, batch_size: int,
                 augment_cfg=None) -> BatchSource:
    """The batch source for a task's data: device-resident tensors for images in memory, a
    DataLoader over the files for images on disk."""
    if isinstance(task.train, FileSet):
        return LoaderBatches(task.train, task.val, mean, std, device, batch_size,
                             augment_cfg.resize, augment_cfg.crop, augment_cfg.flip)
    aug = augment_cfg if augment_cfg is not None else {}
    padding = int(aug.get("crop_padding", 0))
    crop = int(aug["crop"]) if "crop" in aug else None  # an image folder decoded into memory
    return TensorBatches(on_device(task.train, device), on_device(task.val, device), mean, std,
                         device, batch_size, padding, bool(aug.get("flip", False)), crop)

"""Datasets, class hierarchies, A/B splits and per-task views.

A dataset here is a set of classes (with an optional two-level hierarchy) and its train and
validation images. A task is a subset of the classes with labels remapped to 0..K-1 by rank;
its train and validation views hold only that task's images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ConfigError
from .splits import Split, make_split  # noqa: F401


@dataclass
class ImageSet:
    """Images held in memory as uint8 [N, C, H, W] with int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: ImageSet
    val: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Two-level hierarchy: superclass index per class, and each superclass's group
    # ("man-made" / "natural"), which the dissimilar split uses.
    superclasses: list[str] = field(default_factory=list)
    class_superclass: list[int] = field(default_factory=list)
    superclass_group: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_groups(self) -> list[str] | None:
        if not self.superclass_group:
            return None
        return [self.superclass_group[s] for s in self.class_superclass]


@dataclass
class Task:
    """One side of a split: its classes (dataset indices, sorted) and remapped views."""

    name: str               # "A" or "B"
    classes: list[int]
    class_names: list[str]
    train: ImageSet
    val: ImageSet

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def task_view(ds: Dataset, name: str, classes: list[int]) -> Task:
    """The images of ``classes`` with labels remapped to 0..K-1 by rank of the class index."""
    classes = sorted(classes)
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))

    def view(s: ImageSet) -> ImageSet:
        keep = remap[s.y] >= 0
        return ImageSet(s.x[keep], remap[s.y[keep]])

    return Task(name, classes, [ds.classes[c] for c in classes], view(ds.train), view(ds.val))


_CACHE: dict = {}


def load_dataset(data_cfg) -> Dataset:
    """Build the dataset a config names. Held once per process (cells share it)."""
    from omegaconf import OmegaConf

    key = OmegaConf.to_yaml(data_cfg)
    if key not in _CACHE:
        _CACHE.clear()  # one dataset per process; never a copy per cell
        _CACHE[key] = _build(data_cfg)
    return _CACHE[key]


def _build(cfg) -> Dataset:
    if cfg.name == "synthetic":
        from . import synthetic

        if cfg.num_superclasses < 1 or cfg.classes_per_superclass < 1:
            raise ConfigError(
                f"data.num_superclasses={cfg.num_superclasses} and data.classes_per_superclass="
                f"{cfg.classes_per_superclass} must be >= 1")
        args = dict(num_superclasses=cfg.num_superclasses,
                    classes_per_superclass=cfg.classes_per_superclass,
                    image_size=cfg.image_size, layout_seed=cfg.seed)
        xt, yt = synthetic.generate(per_class=cfg.train_per_class, seed=2 * cfg.seed, **args)
        xv, yv = synthetic.generate(per_class=cfg.val_per_class, seed=2 * cfg.seed + 1, **args)
        classes, supers, class_super, groups = synthetic.hierarchy(
            cfg.num_superclasses, cfg.classes_per_superclass)
        mean, std = channel_stats(xt)
        return Dataset("synthetic", classes, ImageSet(xt, yt), ImageSet(xv, yv), mean, std,
                       supers, class_super, groups)
    raise ConfigError(f"data={cfg.name!r} has no loader here")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale."""
    xf = x.float().div_(255)
    return tuple(xf.mean((0, 2, 3)).tolist()), tuple(xf.std((0, 2, 3)).tolist())

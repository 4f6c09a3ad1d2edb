"""Datasets, class hierarchies, A/B splits and per-task views.

A dataset here is a set of classes (with an optional two-level hierarchy) and its train and
validation images. A task is a subset of the classes with labels remapped to 0..K-1 by rank;
its train and validation views hold only that task's images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import ConfigError
from .sets import FileSet, ImageSet, channel_stats, first_per_class  # noqa: F401
from .splits import ClassGroups, Split, make_split  # noqa: F401


@dataclass
class Images:
    train: ImageSet | FileSet
    val: ImageSet | FileSet
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class Dataset:
    """A dataset's classes and class hierarchy, known at once, and its images, loaded on first
    use: a sweep is planned and its splits.json written (dry_run) without reading an image."""

    name: str
    classes: list[str]
    load_images: Callable[[], Images] = field(repr=False)
    # Two-level hierarchy: superclass index per class, and each superclass's group, which the
    # dissimilar split uses: task A = the classes of group ``groups[0]``, task B of ``groups[1]``.
    superclasses: list[str] = field(default_factory=list)
    class_superclass: list[int] = field(default_factory=list)
    superclass_group: list[str] = field(default_factory=list)
    groups: tuple[str, ...] = ("man-made", "natural")
    image_size: int | None = None   # side of the images the batches carry (the net's input)
    # A quick check that the files are there (downloading them if allowed); run before training.
    check: Callable[[], None] = field(default=lambda: None, repr=False)
    # Data keys the dataset worked out from its files (auto image sizes): config.fit_to_data
    # writes them into the config, so records and workers see numbers.
    resolved: dict = field(default_factory=dict)
    _images: Images | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def images(self) -> Images:
        if self._images is None:
            self._images = self.load_images()
        return self._images

    @property
    def train(self) -> ImageSet | FileSet:
        return self.images.train

    @property
    def val(self) -> ImageSet | FileSet:
        return self.images.val

    @property
    def mean(self) -> tuple[float, ...]:
        return self.images.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.images.std

    def class_groups(self) -> ClassGroups | None:
        if not self.superclass_group:
            return None
        return ClassGroups([self.superclass_group[s] for s in self.class_superclass], self.groups)


@dataclass
class Task:
    """One side of a split: its classes (dataset indices, sorted) and remapped views."""

    name: str               # "A" or "B"
    classes: list[int]
    class_names: list[str]
    train: ImageSet | FileSet
    val: ImageSet | FileSet

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def task_view(ds: Dataset, name: str, classes: list[int]) -> Task:
    """The images of ``classes`` with labels remapped to 0..K-1 by rank of the class index."""
    classes = sorted(classes)
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))

    def view(s):
        keep = remap[s.y] >= 0
        return s.subset(keep, remap[s.y[keep]])

    return Task(name, classes, [ds.classes[c] for c in classes], view(ds.train), view(ds.val))


_CACHE: dict = {}


def load_dataset(data_cfg) -> Dataset:
    """Build the dataset a config names. Held once per process (cells share it)."""
    from omegaconf import OmegaConf

    key = OmegaConf.to_yaml(data_cfg)
    if key not in _CACHE:
        _CACHE.clear()  # one dataset per process; never a copy per cell
        ds = _CACHE[key] = _build(data_cfg)
        if ds.resolved:  # the same dataset for the config with its auto values written in
            resolved = OmegaConf.create(OmegaConf.to_container(data_cfg))
            for k, v in ds.resolved.items():
                OmegaConf.update(resolved, k, v)
            _CACHE[OmegaConf.to_yaml(resolved)] = ds
    return _CACHE[key]


def _build(cfg) -> Dataset:
    """The dataset's classes and hierarchy now; its images when first used."""
    if cfg.name == "synthetic":
        from . import synthetic

        args = dict(num_superclasses=cfg.num_superclasses,
                    classes_per_superclass=cfg.classes_per_superclass,
                    image_size=cfg.image_size, layout_seed=cfg.seed)

        def load() -> Images:
            xt, yt = synthetic.generate(per_class=cfg.train_per_class, seed=2 * cfg.seed, **args)
            xv, yv = synthetic.generate(per_class=cfg.val_per_class, seed=2 * cfg.seed + 1, **args)
            return Images(ImageSet(xt, yt), ImageSet(xv, yv), *channel_stats(xt))

        classes, supers, class_super, groups = synthetic.hierarchy(
            cfg.num_superclasses, cfg.classes_per_superclass)
        return Dataset("synthetic", classes, load, supers, class_super, groups,
                       image_size=int(cfg.image_size))
    if cfg.name in ("cifar10", "cifar100"):
        from . import cifar

        def load() -> Images:
            train, val = cifar.load(cfg)
            return Images(train, val, *channel_stats(train.x))

        h = cifar.hierarchy(cfg.name)
        return Dataset(cfg.name, cifar.classes(cfg.name), load, h.superclasses, h.class_superclass,
                       h.superclass_group, h.groups, image_size=32, check=lambda: cifar.check(cfg))
    if cfg.name in ("imagenet", "imagefolder"):
        from . import folder

        classes, h = folder.describe(cfg)
        resize, crop = folder.sizes(cfg, classes)  # auto: from a sample of the images' headers

        def load() -> Images:
            train, val = folder.load(cfg, classes, resize, crop)
            return Images(train, val, tuple(cfg.mean), tuple(cfg.std))

        return Dataset(cfg.name, classes, load, h.superclasses if h else [],
                       h.class_superclass if h else [], h.superclass_group if h else [],
                       h.groups if h else (), image_size=crop, check=lambda: folder.check(cfg, classes),
                       resolved={"augment.resize": resize, "augment.crop": crop})
    raise ConfigError(f"data={cfg.name!r} has no loader here")

"""What a network is, for its cost (its task's size, counted without reading an image, and the
work it does), and the finished records of the same kind of network (see the package's doc)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Images per class of the datasets whose sizes are fixed (train, validation); ImageNet's
# training classes hold 732 to 1300 images (1,281,167 in all).
PER_CLASS = {"cifar10": (5000, 1000), "cifar100": (500, 100), "imagenet": (1281, 50)}
COUNT_CLASSES = 32      # class folders counted per task (the rest extrapolated from their mean)


# ---------------------------------------------------------------------------------------------
# What a network is, for its cost: its task's size and the work it does


@dataclass(frozen=True)
class TaskSize:
    classes: int
    train: int
    val: int


@dataclass(frozen=True)
class Work:
    """What a network costs depends on: how many leading units run without gradient (frozen),
    the unit a probe reads (0: a trained network), and its task's size."""
    frozen: int
    probe: int
    task: TaskSize

    @property
    def shape(self) -> tuple:
        """What a burst times (the task's image counts only multiply it)."""
        return (self.frozen, self.probe, self.task.classes)


def _count_files(folder: Path, exts: tuple[str, ...]) -> int:
    from ..data.folder import images_below

    return sum(1 for _ in images_below(folder, exts))


def _folder_counts(data_cfg, names: list[str], which: str) -> int:
    """Images of the classes ``names`` in an image folder's split ``which``, counted (not read)
    in up to COUNT_CLASSES class folders and extrapolated to the others."""
    from ..data.folder import _extensions, _root

    sub = _root(data_cfg) / str(data_cfg[f"{which}_dir"])
    step = max(1, len(names) // COUNT_CLASSES)
    sample = names[::step][:COUNT_CLASSES]
    cap = data_cfg.get(f"{which}_per_class")
    counts = [_count_files(sub / c, _extensions()) for c in sample]
    if cap is not None:
        counts = [min(int(cap), k) for k in counts]
    return round(sum(counts) / max(1, len(counts)) * len(names))


def task_size(ctx, target: str, split_seed: int) -> TaskSize:
    """Classes, training and validation images of a task, without reading an image (the task's
    own views where the images are loaded already)."""
    ds = ctx.dataset
    classes = list(ctx.split(split_seed).task(target))
    if getattr(ds, "_images", None) is not None:
        t = ctx.task(target, split_seed)
        return TaskSize(len(classes), len(t.train), len(t.val))
    d = ctx.cfg.data
    if d.name == "synthetic":
        return TaskSize(len(classes), len(classes) * int(d.train_per_class), len(classes) * int(d.val_per_class))
    names = [ds.classes[i] for i in classes]
    counts = []
    for which, i in (("train", 0), ("val", 1)):
        cap = d.get(f"{which}_per_class")
        if d.name in ("cifar10", "cifar100") or (d.name == "imagenet" and not _root_exists(d)):
            k = PER_CLASS[d.name][i]
            counts.append(len(names) * (min(k, int(cap)) if cap is not None else k))
        else:
            counts.append(_folder_counts(d, names, which))
    return TaskSize(len(classes), *counts)


def _root_exists(d) -> bool:
    return d.get("root") not in (None, "", "???") and Path(os.path.expanduser(str(d.root))).is_dir()


def in_memory(cfg, size: TaskSize) -> bool:
    """The images are held in memory (an image folder: when they fit in data.memory_gb)."""
    d = cfg.data
    if d.name not in ("imagenet", "imagefolder"):
        return True
    resize, crop = int(d.augment.resize), int(d.augment.crop)
    return 3 * (size.train * resize ** 2 + size.val * crop ** 2) <= float(d.get("memory_gb", 0)) * 2 ** 30


def cache_applies(cfg, size: TaskSize) -> bool:
    """The feature cache can apply (features.feature_batches): not switched off, images in
    memory, no random crop or flip. Whether it fits in memory is the burst's to check."""
    if cfg.train.get("feature_cache", "auto") is False or not in_memory(cfg, size):
        return False
    aug = cfg.data.get("augment") or {}
    if aug.get("crop_padding", 0) or aug.get("flip", False):
        return False
    crop, resize = aug.get("crop"), aug.get("resize")
    return crop is None or resize is None or int(crop) == int(resize)


def work_of(ctx, cell, sizes: dict) -> Work:
    from ..runner import transfer_plan

    key = (cell.target, cell.split_seed)
    if key not in sizes:
        sizes[key] = task_size(ctx, *key)
    if cell.probe:
        return Work(0, cell.n, sizes[key])
    return Work(transfer_plan(cell, ctx.cfg.train)[0], 0, sizes[key])


# ---------------------------------------------------------------------------------------------
# Finished records


def record_work(rec: dict) -> tuple | None:
    """A done record's (frozen, probe unit, classes, validation images): what it is matched on."""
    if rec.get("status") != "done" or rec.get("collapsed"):
        return None
    probe = int(rec.get("n") or 0) if rec.get("probe") else 0
    return (0 if probe else int(rec.get("frozen_layers") or 0), probe, rec.get("target_classes"),
            rec.get("val_images"))


def record_seconds(rec: dict, epochs: int) -> float | None:
    """A finished network's wall time as this recipe's epochs would take it: the record's
    wall time (a resumed one's train_time, which spans its attempts), the per-epoch part scaled
    where the record trained another number of epochs."""
    wall, train = rec.get("wall_time"), rec.get("train_time")
    if wall is None and train is None:
        return None
    seconds = float(train if rec.get("resumed_from_epoch") and train is not None else wall if wall is not None
                    else train)
    done = ((rec.get("config") or {}).get("train") or {}).get("epochs")
    if done and int(done) != int(epochs) and not rec.get("probe") and train is not None:
        setup = float(rec.get("setup_time") or 0.0)
        seconds += (float(train) - setup) * (int(epochs) / int(done) - 1)
    return max(0.0, seconds)


def from_records(store, epochs: int) -> dict[tuple, dict[str, float]]:
    """{(frozen, probe unit, classes, validation images): {key: seconds}} of the folder's finished
    networks."""
    out: dict[tuple, dict[str, float]] = {}
    root = Path(store.root) / "cells"
    if not root.is_dir():
        return out
    for rec in store.records():
        kind, s = record_work(rec), record_seconds(rec, epochs)
        if kind is not None and s is not None:
            out.setdefault(kind, {})[rec.get("key")] = s
    return out

"""Shared helpers for the tests: a tiny synthetic sweep (6 classes, 3 per task, 12 training
images a class, one epoch), so a network trains in a fraction of a second on a CPU."""
from __future__ import annotations

from transferlab.config import compose, validate

# Explicit sizes and recipe: the defaults of the dataset and recipe are tuned elsewhere and may
# change; nothing here depends on them or on any accuracy. A small learning rate: at batch 8
# the default one can diverge within a few epochs.
TINY = ["data.num_superclasses=2", "data.classes_per_superclass=3", "data.train_per_class=12",
        "data.val_per_class=6", "train.epochs=1", "train.batch_size=8", "train.lr=0.005", "device=cpu"]

# Record fields that measure time and so differ between two otherwise identical runs.
TIMING = {"time", "train_time", "images_per_s", "setup_time", "eval_time", "wall_time",
          "started_at", "finished_at", "run_id"}


def tiny(*overrides: str) -> list[str]:
    """TINY's overrides with ``overrides`` in place of the keys they set, and added otherwise:
    every test's sweep is this one tiny sweep, changed only where the test needs it."""
    merged = {}
    for ov in (*TINY, *overrides):
        merged[ov.partition("=")[0].lstrip("+")] = ov
    return list(merged.values())


def tiny_cfg(*overrides: str):
    """The composed and validated config of a tiny sweep plus ``overrides``."""
    cfg = compose(tiny(*overrides))
    validate(cfg)
    return cfg


def without_timing(x):
    """A record (or part of one) with every timing field removed, recursively."""
    if isinstance(x, dict):
        return {k: without_timing(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [without_timing(v) for v in x]
    return x


def task_setup(*overrides: str):
    """(config, dataset, task B of split seed 0, a fresh source network for it): what the
    trainer tests build their cells from."""
    import torch

    from transferlab.data import load_dataset, make_split, task_view
    from transferlab.models import build_model

    cfg = compose(list(overrides))
    ds = load_dataset(cfg.data)
    split = make_split(cfg.split.name, ds.num_classes, 0, ds.class_groups())
    task = task_view(ds, "B", list(split.task("B")))
    source = build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(1))
    return cfg, ds, task, source

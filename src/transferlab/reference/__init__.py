"""The original study's own results, shipped as package data.

``yosinski2014_networks.csv`` holds one row per network trained by Yosinski et al. 2014 with
its ImageNet validation top-1 accuracy, as the authors' plotting code computed it: the mean of
the 10 best validation evaluations of the run (recomputed from their published training logs).

    from transferlab import analysis, reference
    df = reference.networks()                       # the analysis schema, as analysis.load gives
    analysis.table1(df, metric="best10")            # the paper's Table 1
    analysis.figure2(df, metric="best10")           # the paper's Figure 2
"""
from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd

from .. import treatments as T

CSV = "yosinski2014_networks.csv"
SWEEP = "yosinski2014"
NUM_LAYERS = 8

# The CSV's words -> this package's treatments (treatments.TABLE), plus the original study's
# reduced-data bases, which transferlab does not train.
TREATMENTS = {**{t.reference: t.name for t in T.TABLE}, "base-reduced-data": "base_reduced"}
LABELS = {**{t.name: t.label for t in T.TABLE}, "base_reduced": "base_reduced"}
FINETUNE = {t.name: t.finetune for t in T.TABLE}
# Our dissimilar split calls the man-made task A and the natural task B (data/splits.py).
TASKS = {"A": "A", "B": "B", "man-made": "A", "natural": "B", "all": "all", "random": "random"}
CLASSES = {("random", "A"): 500, ("random", "B"): 500, ("dissimilar", "A"): 551,
           ("dissimilar", "B"): 449, ("all", "all"): 1000}


def csv_path():
    """The shipped CSV (a Traversable; ``str()`` of it is a path for an installed package)."""
    return files(__package__) / CSV


def raw() -> pd.DataFrame:
    """The CSV exactly as published: network, split, split_seed, source, target, n, treatment, top1."""
    with csv_path().open() as f:
        return pd.read_csv(f, dtype={"split_seed": str})


def networks() -> pd.DataFrame:
    """The original networks in the schema of ``analysis.load``.

    Its accuracy is the mean of the 10 best validation evaluations, so it fills ``best10_top1``;
    the final-evaluation accuracy was not published and ``val_top1`` is NaN (use metric="best10").
    Every network has training seed 0; the dissimilar and 1000-class rows have split seed 0,
    and the reduced-data bases carry their images per class in ``per_class``.
    """
    d = raw()
    seed = d.split_seed.fillna("0")
    per_class = seed.str.extract(r"per_class=(\d+)", expand=False)
    out = pd.DataFrame({
        "sweep": SWEEP,
        "treatment": d.treatment.map(TREATMENTS),
        "source": d.source.map(TASKS).astype(object).where(d.source.notna(), None),
        "target": d.target.map(TASKS),
        "n": d.n.astype(int),
        "split": d.split,
        "split_seed": np.where(per_class.notna(), 0, pd.to_numeric(seed, errors="coerce")).astype(int),
        "seed": 0,
        "per_class": pd.to_numeric(per_class).astype("Int64"),
        "name": d.network,
        "num_layers": NUM_LAYERS,
        "val_top1": np.nan,
        "best10_top1": d.top1.astype(float),
    })
    bad = out.treatment.isna() | out.target.isna()
    if bad.any():
        raise ValueError(f"{CSV}: unknown treatment or target in rows {list(d.network[bad])}")
    out["label"] = out.treatment.map(LABELS)
    out["finetune"] = out.treatment.map(FINETUNE).fillna(False).astype(bool)
    out["frozen_layers"] = np.where(out.finetune | (out.treatment == "base"), 0, out.n)
    out["key"] = [f"{s}{ss}_{nm}" for s, ss, nm in zip(out.split, out.split_seed, out.name)]
    out["target_classes"] = [CLASSES.get((s, t)) for s, t in zip(out.split, out.target)]
    out["val_images"] = [50 * c if c else None for c in out.target_classes]  # ILSVRC2012: 50 a class
    # Learning curves were not published with the accuracies: convergence is unknown here.
    out["evaluations"], out["late_gain_pp"], out["plateau"] = np.nan, np.nan, None
    return out

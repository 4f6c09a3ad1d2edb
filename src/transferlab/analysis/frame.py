"""Records -> tidy DataFrame: one row per finished network, and the helpers every table and figure
selects its rows with (metric, split, own bases)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import convergence
from .. import treatments as T
from ..stats import REPLICATE
from ..store import SweepStore

COLUMNS = ["sweep", "key", "name", "label", "treatment", "source", "target", "n", "finetune", "frozen_layers",
           "split", "split_seed", "seed", "num_layers", "target_classes", "val_images", "val_top1", "val_top5",
           "val_loss", "best10_top1", "evaluations", "late_gain_pp", "plateau", "train_loss", "epochs",
           "wall_time", "train_time", "images_per_s", "device", "collapsed", "probe", "history"]
METRICS = {"final": "val_top1", "best10": "best10_top1"}
METRIC_TEXT = {"val_top1": "top-1 accuracy (final evaluation)",
               "best10_top1": "top-1 accuracy (mean of 10 best evaluations)"}
BEST_K = {"best10_top1": 10}
OWN_BASE = REPLICATE + ["target"]   # a network's own base: same replicate, same target task
TASK_NAMES = {"dissimilar": {"A": "man-made", "B": "natural"}}  # data/splits.py: A = man-made
FIG2 = list(T.FIGURE2)
LABELS = list(T.LABELS)


def records_frame(records: list[dict], sweep: str = "") -> pd.DataFrame:
    """One row per finished record; ``best10_top1`` averages the 10 best of all evaluations;
    ``late_gain_pp`` and ``plateau`` are the record's convergence (transferlab.convergence)."""
    rows = []
    for r in records:
        if r.get("status") != "done":
            continue
        m = r["metrics"]
        history = r.get("history", [])
        evals = [h["val_top1"] for h in history if h.get("val_top1") is not None]
        conv = r.get("convergence") or convergence.of_history(history)
        probe = T.BY_NAME[r["treatment"]].probe if r.get("treatment") in T.BY_NAME else False
        # A probe is evaluated once, with no selection on validation: its best-10 is that evaluation.
        best10 = m.get("val_top1") if probe else float(np.mean(sorted(evals)[-10:])) if evals else np.nan
        rows.append({
            **{k: r.get(k) for k in ("key", "name", "label", "treatment", "source", "target", "n",
                                     "finetune", "frozen_layers", "split", "split_seed", "seed", "num_layers",
                                     "target_classes", "val_images", "wall_time", "train_time", "images_per_s",
                                     "device")},
            "sweep": sweep, "val_top1": m.get("val_top1"), "val_top5": m.get("val_top5"),
            "val_loss": m.get("val_loss"), "train_loss": m.get("train_loss"), "epochs": m.get("epoch"),
            "best10_top1": best10, "evaluations": None if probe else len(evals), "probe": probe,
            "late_gain_pp": conv["gain_pp"], "plateau": conv["plateau"], "collapsed": r.get("collapsed"),
            "history": history,
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("val_top1", "val_top5", "best10_top1", "num_layers", "late_gain_pp"):
        df[col] = pd.to_numeric(df[col]).astype(float)
    return df.sort_values(["sweep", "split", "split_seed", "seed", "target", "n", "treatment"]).reset_index(drop=True)


def load(*roots) -> pd.DataFrame:
    """One row per finished cell of one or several sweep folders (e.g. a random-split and a
    dissimilar-split sweep); the ``sweep`` column tells them apart, ``history`` holds each
    network's evaluations (``history_frame`` makes them a long table)."""
    if not roots:
        raise TypeError("load() needs at least one sweep folder")
    paths = [Path(r) for r in roots]
    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{p} is not a sweep folder (it does not exist)")
    names = [p.name for p in paths]
    if len(set(names)) < len(names):  # same folder name under different parents
        names = [str(p) for p in paths]
    frames = [records_frame(SweepStore(p).records(), sweep=nm) for p, nm in zip(paths, names)]
    full = [f for f in frames if len(f)]
    return pd.concat(full, ignore_index=True) if full else frames[0]


HISTORY = ["epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "time"]


def history_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The learning curves of ``df``'s networks, one row per evaluation (long format): the
    network's identifying columns, then epoch (fractional with several evaluations per
    epoch), step and the metrics logged at that point."""
    ids = ["sweep", "key", "name", "label", "treatment", "split", "split_seed", "seed", "target", "n"]
    rows = [{**{k: r[k] for k in ids}, **{k: h.get(k) for k in HISTORY}}
            for r in df.to_dict("records") if isinstance(r.get("history"), list) for h in r["history"]]
    return pd.DataFrame(rows, columns=ids + HISTORY)


def metric_column(metric: str) -> str:
    """"final" -> val_top1, "best10" -> best10_top1 (column names are accepted too)."""
    if metric in METRICS:
        return METRICS[metric]
    if metric in METRICS.values():
        return metric
    raise ValueError(f"metric={metric!r} is not valid; allowed: {', '.join(METRICS)}")


def _acc(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that have the metric, with it copied to column ``acc``, less the networks whose
    training collapsed. A best-k metric needs k evaluations per network (else it averages early
    evaluations in): refused otherwise."""
    col = metric_column(metric)
    if "collapsed" in df:  # a dead network measures its training, not its features (caveats() lists them)
        df = df[df.collapsed.isna()]
    if len(df) and df[col].isna().all():
        hint = " (the original study published only mean-of-10-best accuracies: use metric='best10')" \
            if col == "val_top1" and "best10_top1" in df and df.best10_top1.notna().any() else ""
        raise ValueError(f"no network has a {col} value{hint}")
    k = BEST_K.get(col)
    if k and "evaluations" in df:
        few = df[df.evaluations.notna() & (df.evaluations < k)]
        if len(few):
            raise ValueError(
                f"metric best{k} averages the {k} best validation evaluations of a network, but {len(few)} "
                f"network(s) have fewer than {k} evaluations (as few as {int(few.evaluations.min())}): it would "
                f"average early, unfinished evaluations in. Train with more evaluations "
                f"(train.evals_per_epoch=2, or more train.epochs) or use the final metric")
    d = df[df[col].notna()].copy()
    d["acc"] = d[col].astype(float)
    return d


def _pick_split(df: pd.DataFrame, split: str | None) -> tuple[pd.DataFrame, str | None]:
    """Rows of one split: the one asked for, else ``random`` (the paper's main experiment) if
    present, else the first one there is."""
    if split is None:
        splits = sorted(df.split.dropna().unique(), key=lambda s: (s != "random", s))
        split = splits[0] if splits else None
    return df[df.split == split], split


def _depth(df: pd.DataFrame) -> int:
    """L, the network's number of weight layers (from the records; else max n + 1)."""
    if "num_layers" in df and df.num_layers.notna().any():
        return int(df.num_layers.max())
    return int(df.n.max()) + 1


def directions(df: pd.DataFrame) -> list[str]:
    """The target tasks the networks were trained toward (a base that only served as a source,
    baseA in a directions=[B] sweep, is not one); every target when there are only bases."""
    cells = df[df.treatment != "base"]
    return sorted((cells if len(cells) else df).target.dropna().unique())


def own_bases(df: pd.DataFrame) -> pd.DataFrame:
    """The bases the other networks are compared with: those of the trained directions."""
    return df[(df.treatment == "base") & df.target.isin(directions(df))]




def _ylabel(metric: str) -> str:
    return METRIC_TEXT[metric_column(metric)]


"""Records -> tidy DataFrame -> the paper's figures and tables (Yosinski et al. 2014, section 4).

    python -m transferlab.analysis results/<sweep> [results/<other sweep> ...]
           [--metric final|best10] [--overlay-original] [--out DIR]
    python -m transferlab.analysis --original      # the original study's own numbers

writes cells.csv, figures/ (Figure 2, Figure 3, the decomposition, tables) and report.md.

In a notebook:
    from transferlab import analysis, reference
    df = analysis.load("results/synthetic-random", "results/synthetic-dissimilar")
    analysis.figure2(df)                 # matplotlib Figures
    analysis.figure3(df)
    analysis.table1(df)                  # DataFrames, in percentage points
    analysis.decomposition(df)
    analysis.table1(reference.networks(), metric="best10")   # the original study's numbers

Conventions:
- Every network is compared with its own base: the base of the same sweep, split, split seed,
  training seed and target task. Footnote 3 of the paper: networks trained toward task A are
  the same treatment as those toward B, relabelled (AnA is counted as BnB, BnA as AnB), so
  with both directions trained the tables pool them, and the base column pools baseA and baseB;
  with one direction the base is that target's base alone.
- A replicate is one (sweep, split, split seed, training seed): the unit of every interval
  (``transferlab.stats``). Differences are paired within a replicate and averaged there; the
  interval is Student's t over replicates. With one replicate the tables say there is none.
- ``metric``: "final" (accuracy at the last evaluation) or "best10" (mean of the 10 best
  validation evaluations of the run, the measure of the original plots; it selects on
  validation data and is refused for networks with fewer than 10 evaluations).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.figure import Figure  # no pyplot: no global backend state, inline notebooks unaffected

from . import convergence, stats
from . import treatments as T
from .stats import REPLICATE
from .store import SweepStore, atomic_write_bytes

COLUMNS = ["sweep", "key", "name", "label", "treatment", "source", "target", "n", "finetune", "frozen_layers",
           "split", "split_seed", "seed", "num_layers", "target_classes", "val_images", "val_top1", "val_top5",
           "val_loss", "best10_top1", "evaluations", "late_gain_pp", "plateau", "train_loss", "epochs",
           "wall_time", "train_time", "images_per_s", "device", "collapsed", "history"]
METRICS = {"final": "val_top1", "best10": "best10_top1"}
METRIC_TEXT = {"val_top1": "top-1 accuracy (final evaluation)",
               "best10_top1": "top-1 accuracy (mean of 10 best evaluations)"}
BEST_K = {"best10_top1": 10}
OWN_BASE = REPLICATE + ["target"]   # a network's own base: same replicate, same target task
TASK_NAMES = {"dissimilar": {"A": "man-made", "B": "natural"}}  # data/splits.py: A = man-made
FIG2 = list(T.FIGURE2)
LABELS = list(T.LABELS)
# Each treatment's marker and colours (treatments.TABLE), and dissimilar-split transfer's: the
# paper's orange hexagons.
STYLE = {**{t.label: t.style for t in T.TABLE},
         "dissimilar": dict(face="#f28e1c", edge="#b35c00", marker="h", label="transfer AnB, dissimilar split")}
OFFSETS = {t.label: t.offset for t in T.TABLE if t.figure2}
ORIGINAL = "Yosinski et al. 2014 (ImageNet)"


# --------------------------------------------------------------------------- records -> frame

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
        rows.append({
            **{k: r.get(k) for k in ("key", "name", "label", "treatment", "source", "target", "n",
                                     "finetune", "frozen_layers", "split", "split_seed", "seed", "num_layers",
                                     "target_classes", "val_images", "wall_time", "train_time", "images_per_s",
                                     "device")},
            "sweep": sweep, "val_top1": m.get("val_top1"), "val_top5": m.get("val_top5"),
            "val_loss": m.get("val_loss"), "train_loss": m.get("train_loss"), "epochs": m.get("epoch"),
            "best10_top1": float(np.mean(sorted(evals)[-10:])) if evals else np.nan, "evaluations": len(evals),
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
    ids = ["sweep", "key", "name", "label", "split", "split_seed", "seed", "target", "n"]
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


# --------------------------------------------------------------------------- tables

def summary(df: pd.DataFrame, metric: str = "final", split: str | None = None) -> pd.DataFrame:
    """Mean accuracy per treatment (rows) and n (columns) of one split; n = 0 is the mean of
    the own bases (the target's base; baseA and baseB pooled when both directions were trained)."""
    d, _ = _pick_split(_acc(df, metric), split)
    rows = {}
    base = own_bases(d).acc.mean()
    for label in LABELS:
        sub = d[d.label == label]
        if len(sub):
            rows[label] = {0: base, **sub.groupby("n").acc.mean().to_dict()}
    out = pd.DataFrame(rows).T
    out.columns.name = "n"
    return out.reindex(sorted(out.columns), axis=1)


def relative(df: pd.DataFrame, metric: str = "final") -> pd.DataFrame:
    """Every non-base network with ``rel``: its accuracy minus that of its own base network
    (same sweep, split, split seed, training seed and target task). Networks whose base is
    missing are left out."""
    d = _acc(df, metric)
    base = d[d.treatment == "base"].groupby(OWN_BASE, dropna=False).acc.mean().rename("base_acc")
    out = d[d.treatment != "base"].join(base, on=OWN_BASE)
    out["rel"] = out.acc - out.base_acc
    return out[out.rel.notna()]


def _pp(table: pd.DataFrame) -> pd.DataFrame:
    """stats.over_replicates columns (mean, half, low, high) in percentage points, renamed."""
    out = table.rename(columns={"mean": "mean_pp", "half": "ci_pp", "low": "ci_low_pp", "high": "ci_high_pp"})
    for c in ("mean_pp", "ci_pp", "ci_low_pp", "ci_high_pp"):
        out[c] = 100 * out[c].astype(float)
    return out


def effects(df: pd.DataFrame, metric: str = "final", split: str | None = None,
            confidence: float = 0.95) -> pd.DataFrame:
    """Each treatment at each n minus its own base, in percentage points: the mean over
    replicates of each replicate's mean difference, with a t interval over replicates."""
    d, _ = _pick_split(df, split)
    rel = relative(d, metric)
    rel = rel[rel.label.isin(LABELS)].assign(diff=lambda r: r.rel)
    out = _pp(stats.over_replicates(rel, ["label", "n"], confidence=confidence))
    order = {lab: i for i, lab in enumerate(LABELS)}
    return out.sort_values(["label", "n"], key=lambda c: c.map(order) if c.name == "label" else c).reset_index(drop=True)


def table1(df: pd.DataFrame, metric: str = "final", split: str | None = None,
           starts: tuple[int, ...] = (1, 3, 5), confidence: float = 0.95) -> pd.DataFrame:
    """Table 1: mean boost of AnB+ over its own base and over the BnB+ of the same replicate, for
    layers start..L-1, in percentage points.

    over base: every AnB+ network with n in the range minus its own base, averaged within its
    replicate. over BnB+ (the paper's control for "transfer helps", since a BnB+ gets the same
    extra training): AnB+ minus the BnB+ of the same replicate, target and n, averaged within
    the replicate. Means and t intervals over replicates (``ci`` = half-width; NaN with one
    replicate). ``paper_table1`` computes the paper's own pooled version.
    """
    d, _ = _pick_split(_acc(df, metric), split)
    L = _depth(d) if len(d) else 0
    rel = relative(d, metric)
    ft = d[d.label == "AnB+"].set_index(OWN_BASE + ["n"]).acc
    self_ft = d[d.label == "BnB+"].groupby(OWN_BASE + ["n"]).acc.mean()
    pairs = (ft - self_ft.reindex(ft.index)).rename("diff").dropna().reset_index()
    rows = []
    for lo in starts:
        if lo > L - 1:
            continue
        over_base = stats.over_replicates(rel[(rel.label == "AnB+") & rel.n.between(lo, L - 1)].assign(diff=lambda r: r.rel), [])
        over_self = stats.over_replicates(pairs[pairs.n.between(lo, L - 1)], [])
        b = over_base.iloc[0] if len(over_base) else None
        s = over_self.iloc[0] if len(over_self) else None
        rows.append({"layers": f"{lo}-{L - 1}",
                     "replicates": int(b.replicates) if b is not None else 0,
                     "AnB+": int(b.networks) if b is not None else 0,
                     "over_base_pp": 100 * b["mean"] if b is not None else np.nan,
                     "over_base_ci_pp": 100 * b.half if b is not None else np.nan,
                     "selffer_replicates": int(s.replicates) if s is not None else 0,
                     "pairs": int(s.networks) if s is not None else 0,
                     "over_selffer_pp": 100 * s["mean"] if s is not None else np.nan,
                     "over_selffer_ci_pp": 100 * s.half if s is not None else np.nan})
    cols = ["layers", "replicates", "AnB+", "over_base_pp", "over_base_ci_pp", "selffer_replicates", "pairs",
            "over_selffer_pp", "over_selffer_ci_pp"]
    return pd.DataFrame(rows, columns=cols).set_index("layers")


def paper_table1(df: pd.DataFrame, metric: str = "best10", split: str | None = "random",
                 starts: tuple[int, ...] = (1, 3, 5)) -> pd.DataFrame:
    """Table 1 as the paper computed it: the mean of every AnB+ network with n in the range
    minus the mean of all base networks of the split (resp. of every BnB+ in the range), with no
    pairing and no interval. On the original study's numbers: 1.6/1.4, 1.8/1.4, 2.1/1.7 points."""
    d, _ = _pick_split(_acc(df, metric), split)
    L = _depth(d) if len(d) else 0
    base = d[d.treatment == "base"].acc
    rows = []
    for lo in starts:
        if lo > L - 1:
            continue
        in_range = d.n.between(lo, L - 1)
        ft, self_ft = d[in_range & (d.label == "AnB+")].acc, d[in_range & (d.label == "BnB+")].acc
        rows.append({"layers": f"{lo}-{L - 1}", "AnB+": len(ft), "BnB+": len(self_ft), "base": len(base),
                     "over_base_pp": 100 * (ft.mean() - base.mean()),
                     "over_selffer_pp": 100 * (ft.mean() - self_ft.mean())})
    return pd.DataFrame(rows, columns=["layers", "AnB+", "BnB+", "base", "over_base_pp",
                                       "over_selffer_pp"]).set_index("layers")


EFFECTS = {"co-adaptation": "base − BnB: fragile co-adapted features lost when layers n+1.. are retrained",
           "specificity": "BnB − AnB: features of layers 1..n too specific to task A",
           "transfer": "base − AnB: the whole transfer gap (the sum of the two)"}


def decomposition(df: pd.DataFrame, metric: str = "final", split: str | None = None,
                  confidence: float = 0.95) -> pd.DataFrame:
    """The drop of frozen transfer per n, split in two (paper section 4.1, interpretation 4):
    co-adaptation loss (base − BnB) and specificity loss (BnB − AnB), plus their sum (base − AnB).

    Each difference is paired within a target of a replicate (a BnB against the base and the AnB
    of the same split seed, training seed and target task), averaged over the replicate's
    targets; ``mean_pp`` is the mean over replicates and ``ci_low_pp``/``ci_high_pp`` the t
    interval, in percentage points.
    """
    d, _ = _pick_split(_acc(df, metric), split)
    cols = ["effect", "n", "replicates", "networks", "mean_pp", "ci_pp", "ci_low_pp", "ci_high_pp"]
    frozen = d[d.label.isin(["BnB", "AnB"])]
    if frozen.empty:
        return pd.DataFrame(columns=cols)
    wide = frozen.pivot_table(index=OWN_BASE + ["n"], columns="label", values="acc", aggfunc="mean")
    wide = wide.reindex(columns=["BnB", "AnB"])
    base = d[d.treatment == "base"].groupby(OWN_BASE).acc.mean().rename("base")
    wide = wide.join(base, on=OWN_BASE)
    losses = {"co-adaptation": wide.base - wide.BnB, "specificity": wide.BnB - wide.AnB,
              "transfer": wide.base - wide.AnB}
    parts = [loss.rename("diff").dropna().reset_index().assign(effect=effect) for effect, loss in losses.items()]
    out = _pp(stats.over_replicates(pd.concat(parts), ["effect", "n"], confidence=confidence))
    order = {e: i for i, e in enumerate(EFFECTS)}
    out = out.sort_values(["effect", "n"], key=lambda c: c.map(order) if c.name == "effect" else c)
    return out[cols].reset_index(drop=True)


def caveats(df: pd.DataFrame, metric: str = "final", confidence: float = 0.95) -> list[str]:
    """What a reviewer would object to, in words: bases that had not stopped learning, and
    selffers that beat their own base by more than the interval (or, with one replicate, by
    more than the validation set's 95% sampling error of a difference), with what that means
    given whether the bases reached a plateau."""
    out = []
    if "collapsed" in df and df.collapsed.notna().any():
        dead = df[df.collapsed.notna()]
        out.append(f"{len(dead)} network(s) left out of every table and figure because their training collapsed: "
                   + "; ".join(f"{r['name']} (split seed {r['split_seed']}, seed {r['seed']}): {r['collapsed']}"
                               for r in dead.to_dict("records")))
    d = _acc(df, metric)
    bases = d[d.treatment == "base"]  # sources too: an under-trained baseA biases every AnB
    rising = bases[bases.plateau.eq(False)]
    if len(rising):
        worst = rising.sort_values("late_gain_pp").iloc[-1]
        out.append(
            f"{len(rising)} of {len(bases)} base network(s) had not reached a plateau: they gained up to "
            f"{worst.late_gain_pp:.1f} points over the last 25% of training ({worst['name']}, split seed "
            f"{worst.split_seed}, seed {worst.seed}; criterion: {convergence.CRITERION}). The bases look "
            f"under-trained, which lets selffers and fine-tuned cells beat them for free: raise train.epochs.")
    unknown = bases[bases.plateau.isna() & (bases.evaluations < 3)]
    if len(unknown):
        out.append(f"{len(unknown)} base network(s) have fewer than 3 evaluations: whether they converged "
                   f"cannot be judged (train.evals_per_epoch or more train.epochs).")
    for split in sorted(d.split.dropna().unique()):
        eff = effects(d, metric, split, confidence)
        split_bases = bases[bases.split == split]
        converged = len(split_bases) and split_bases.plateau.eq(True).all()
        for label in ("BnB", "BnB+"):
            e = eff[eff.label == label]
            if e.empty:
                continue
            if e.replicates.max() > 1:
                ahead, by = e[e.ci_low_pp > 0], f"the {confidence:.0%} interval over replicates excludes 0"
            else:
                noise = _sampling_error_pp(d[d.split == split])
                if noise is None:
                    continue
                ahead = e[e.mean_pp > noise]
                by = (f"1 replicate, so no interval: more than {noise:.1f} points, the 95% sampling error of a "
                      f"difference of two accuracies on these validation images")
            if ahead.empty:
                continue
            ns = ", ".join(f"n={int(r.n)}: {stats.pm(r.mean_pp, r.ci_pp, 1)}" for r in ahead.itertuples())
            why = (f"The bases reached a plateau (under {convergence.MIN_GAIN_PP:g} points gained over the last 25% "
                   "of training), so it is not their last epochs that are missing: a selffer trains on top of layers its base already trained, more training in total, "
                   "and here that finds better solutions than the base did. Read the transfer effects against "
                   "the selffers of the same n (AnB against BnB, AnB+ against BnB+ in Table 1), not against "
                   "the base." if converged else
                   "A selffer's lower layers were already trained once, so this should not happen against a "
                   "converged base: the bases look under-trained (raise train.epochs).")
            out.append(f"{label} beats its own base ({split} split; {ns} points; {by}). {why}")
    return out


def _sampling_error_pp(d: pd.DataFrame) -> float | None:
    """95% sampling error of a difference of two accuracies on a validation set (binomial)."""
    if "val_images" not in d or d.val_images.isna().all():
        return None
    p, n = d.acc.mean(), d.val_images.dropna().min()
    return 100 * 1.96 * float(np.sqrt(2 * p * (1 - p) / n))


# --------------------------------------------------------------------------- figures

def _points(ax, x, y, style: str, size: float = 38, alpha: float = 1.0, label=None, gid=None):
    st = STYLE[style]
    return ax.scatter(x, y, s=size, c=st["face"], edgecolors=st["edge"], marker=st["marker"], linewidths=0.9,
                      alpha=alpha, zorder=4 if style == "base" else 3, label=label, gid=gid)  # bases on top


def _line(ax, x, y, style: str, label=None, gid=None, original: bool = False, ls="-"):
    """A line through means; the original study's lines are thin, dashed and hollow."""
    st = STYLE[style]
    if original:
        return ax.plot(x, y, ls="--", lw=0.9, color=st["edge"], alpha=0.65, marker=st["marker"], ms=4.5,
                       markerfacecolor="none", label=label, gid=gid, zorder=2)[0]
    return ax.plot(x, y, ls=ls, lw=1.6, color=st["edge"], marker=st["marker"], ms=6.5,
                   markerfacecolor=st["face"], markeredgecolor=st["edge"], label=label, gid=gid, zorder=3)[0]


def _curve(start: float, rows: pd.DataFrame, col: str = "acc") -> pd.Series:
    """Means per n of ``rows``, starting from ``start`` at n = 0 (the base, or 0 when relative)."""
    return pd.concat([pd.Series({0: start}), rows.groupby("n")[col].mean()]).dropna()


def _relative_groups(rel: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """Figure 3's bottom panel: (style, label, networks) of its three experiments."""
    return [("AnB", "random-split AnB", rel[(rel.split == "random") & (rel.label == "AnB")]),
            ("dissimilar", "dissimilar-split AnB (both targets)", rel[(rel.split == "dissimilar") & (rel.label == "AnB")]),
            ("random", "random weights", rel[rel.label == "random"])]


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _original() -> pd.DataFrame:
    from . import reference

    return _acc(reference.networks(), "best10")


def _ylabel(metric: str) -> str:
    return METRIC_TEXT[metric_column(metric)]


def figure2(df: pd.DataFrame, metric: str = "final", split: str | None = None,
            overlay_original: bool = False, title: str | None = None) -> Figure:
    """Figure 2: top, every network as a point (both bases at n = 0; BnB, BnB+, AnB, AnB+ per n,
    shifted left/right); bottom, lines through the means. With ``overlay_original`` the original
    study's means are drawn dashed on a right axis of the same scale, aligned at the base."""
    d, split = _pick_split(_acc(df, metric), split)
    d = d[d.label.isin(FIG2)]
    d = pd.concat([own_bases(d), d[d.treatment != "base"]])  # baseA of a directions=[B] sweep is no base here
    fig = Figure(figsize=(7.5, 8.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.25, 1])
    for lab in FIG2:
        sub = d[d.label == lab]
        if len(sub):
            _points(top, sub.n + OFFSETS[lab], sub.acc, lab, label=f"{STYLE[lab]['label']} ({len(sub)})", gid=lab)
    base = d[d.treatment == "base"].acc.mean()
    means = summary(d, metric) if len(d) else pd.DataFrame()
    dirs = directions(d)
    for lab in means.index:
        row = means.loc[lab].dropna()
        _line(bottom, row.index, row.values, lab, label=STYLE[lab]["label"], gid=lab)
    if np.isfinite(base):
        _points(bottom, [0], [base], "base", size=60, label="base", gid="base")
    for ax in (top, bottom):
        if np.isfinite(base):
            ax.axhline(base, color="black", lw=0.8, ls=":", zorder=1)
        ax.grid(alpha=0.3)
        ax.set_ylabel(_ylabel(metric))
    handles, labels = bottom.get_legend_handles_labels()
    if overlay_original:
        o = _original()
        o = o[o.split == "random"]
        twin = bottom.twinx()
        omeans = summary(o, "best10")
        obase = o[o.treatment == "base"].acc.mean()
        for lab in omeans.index.intersection(FIG2):
            row = omeans.loc[lab].dropna()
            _line(twin, row.index, row.values, lab, original=True, gid=f"original:{lab}")
        twin.set_ylabel(f"{ORIGINAL}, dashed\n(mean of 10 best evaluations)", fontsize=8)
        if np.isfinite(base) and len(means):  # same scale, bases level: effects compare by eye
            lo = min(np.nanmin(means.values), np.nanmin(omeans.values) - obase + base)
            hi = max(np.nanmax(means.values), np.nanmax(omeans.values) - obase + base)
            pad = 0.08 * (hi - lo) + 1e-3
            bottom.set_ylim(lo - pad, hi + pad)
            twin.set_ylim(lo - pad - base + obase, hi + pad - base + obase)
        handles.append(Line2D([], [], ls="--", lw=0.9, color="0.35", marker="o", ms=4.5, markerfacecolor="none"))
        labels.append(f"{ORIGINAL} means (right axis)")
    if len(d):
        top.legend(loc="lower left", fontsize=8, ncol=2)
        bottom.legend(handles, labels, loc="lower left", fontsize=8, ncol=2)
    else:
        _empty(top, "no base, selffer or transfer networks")
    ns = sorted(set(d.n.unique()) | {0})
    bottom.set_xticks(ns)
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    top.set_title(title or f"Figure 2 ({split} split): every network", fontsize=11)
    bottom.set_title("means per treatment (both directions pooled, footnote 3)" if len(dirs) > 1 else
                     f"means per treatment (target {''.join(dirs)}; base = base{''.join(dirs)})", fontsize=9)
    return fig


def has_curves(df: pd.DataFrame) -> bool:
    """Whether any network of ``df`` comes with its evaluations (the original study's do not)."""
    return "history" in df and any(isinstance(h, list) and h for h in df.history)


def _evaluations(row) -> pd.DataFrame | None:
    """A network's evaluations with a validation accuracy (a frame row's ``history``), or None."""
    history = getattr(row, "history", None)
    h = pd.DataFrame(history) if isinstance(history, list) else pd.DataFrame()
    return None if h.empty or "val_top1" not in h else h[h.val_top1.notna()]


def learning_curves(df: pd.DataFrame, split: str | None = None, title: str | None = None) -> Figure:
    """The evidence behind "the bases converged": left, each base's validation top-1 at every
    evaluation (the sources of the transfer cells too), with the two windows of the plateau
    criterion shaded and its gain in the legend; right, every other network's curve, coloured
    by treatment."""
    d, split = _pick_split(df, split)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    bases = d[d.treatment == "base"]
    if not has_curves(bases):
        _empty(left, "no base network with a learning curve")
    for r in bases.itertuples():
        if (h := _evaluations(r)) is None:
            continue
        gain = "" if pd.isna(r.late_gain_pp) else f": {r.late_gain_pp:+.1f} pts in the last 25%, " + \
            ("plateau" if r.plateau else "still rising")
        left.plot(h.epoch, h.val_top1, marker="o", ms=2.5, lw=1.2,
                  label=f"{r.name} (split seed {r.split_seed}, seed {r.seed}){gain}")
    if has_curves(bases):
        end = max((h[-1]["epoch"] for h in bases.history if isinstance(h, list) and h), default=0)
        for lo, hi in (convergence.EARLY, convergence.LATE):
            left.axvspan(lo * end, hi * end, color="0.9", zorder=0)
        left.legend(fontsize=7, loc="lower right")
    left.set_title(f"bases ({split} split); shaded: the windows of the plateau criterion", fontsize=9)
    others = d[d.treatment != "base"]
    drawn = set()
    for r in others.itertuples():
        if (h := _evaluations(r)) is None or r.label not in STYLE:
            continue
        right.plot(h.epoch, h.val_top1, lw=0.8, alpha=0.6, color=STYLE[r.label]["edge"],
                   label=None if r.label in drawn else STYLE[r.label]["label"])
        drawn.add(r.label)
    if drawn:
        right.legend(fontsize=7, loc="lower right")
    else:
        _empty(right, "no other network")
    right.set_title("every other network", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    left.set_ylabel("validation top-1 accuracy")
    fig.suptitle(title or f"Learning curves ({split} split)", fontsize=11)
    return fig


def _finish_panel(ax, metric: str) -> None:
    ax.legend(fontsize=7.5, loc="lower left")
    ax.set_ylabel(_ylabel(metric))
    ax.grid(alpha=0.3)


def figure3(df: pd.DataFrame, metric: str = "final", overlay_original: bool = False,
            title: str | None = None) -> Figure:
    """Figure 3: top left, transfer between dissimilar tasks (one line per target task, the
    random-split AnB means for comparison); top right, the first n layers random and frozen;
    bottom, all of them relative to their own base. Missing parts are said so in their panel.
    With ``overlay_original`` the original study's relative curves are drawn dashed (bottom)."""
    d = _acc(df, metric)
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    gs = fig.add_gridspec(2, 2)
    tl, tr, bot = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])
    tl.set_gid("dissimilar")
    tr.set_gid("random-weights")
    bot.set_gid("relative")

    dis = d[d.split == "dissimilar"]
    dis = dis[(dis.treatment == "base") | (dis.label == "AnB")]
    if dis.label.eq("AnB").any():
        for target, style in zip(sorted(dis.target.unique(), key=lambda t: t != "B"), ["-", "--"]):
            t = dis[dis.target == target]
            b, a = t[t.treatment == "base"], t[t.label == "AnB"]
            name = TASK_NAMES["dissimilar"].get(target, target)
            _points(tl, np.zeros(len(b)), b.acc, "base")
            _points(tl, a.n, a.acc, "dissimilar", size=30, alpha=0.8)
            means = _curve(b.acc.mean(), a)
            _line(tl, means.index, means.values, "dissimilar", ls=style, gid=f"dissimilar:{target}",
                  label=f"target {name} ({target}): base{target}, then {'B' if target == 'A' else 'A'}n{target}")
        r = d[d.split == "random"]
        if r.label.eq("AnB").any():
            means = _curve(own_bases(r).acc.mean(), r[r.label == "AnB"])
            ln = _line(tl, means.index, means.values, "AnB", gid="random-split:AnB",
                       label="random split: AnB means (Figure 2)")
            ln.set(lw=0.9, alpha=0.7, ms=4)
        _finish_panel(tl, metric)
    else:
        _empty(tl, "no dissimilar-split transfer networks\n(run a sweep with split=dissimilar)")
    tl.set_title("dissimilar tasks: man-made ↔ natural", fontsize=10)

    rw = d[d.label == "random"]
    if len(rw):
        b = d[d.treatment == "base"].merge(rw[OWN_BASE].drop_duplicates(), on=OWN_BASE)  # their own bases
        _points(tr, np.zeros(len(b)), b.acc, "base", label="own base")
        _points(tr, rw.n, rw.acc, "random", size=30, alpha=0.8)
        means = _curve(b.acc.mean(), rw)
        _line(tr, means.index, means.values, "random", gid="random-weights", label=STYLE["random"]["label"])
        _finish_panel(tr, metric)
    else:
        _empty(tr, "no random-weights networks\n(add random to treatments=[...])")
    tr.set_title("random weights: layers 1..n random and frozen", fontsize=10)

    drawn = False
    for i, (style, label, g) in enumerate(_relative_groups(relative(d, metric))):
        if g.empty:
            continue
        drawn = True
        _points(bot, g.n + (i - 1) * 0.08, g.rel, style, size=18, alpha=0.45)
        means = _curve(0.0, g, "rel")
        _line(bot, means.index, means.values, style, label=label, gid=f"relative:{style}")
    if overlay_original:
        for style, label, g in _relative_groups(relative(_original(), "best10")):
            means = _curve(0.0, g, "rel")
            _line(bot, means.index, means.values, style, original=True, gid=f"original:{style}",
                  label=f"{ORIGINAL}: {label}")
        drawn = True
    if drawn:
        bot.axhline(0, color="black", lw=0.8, ls=":", zorder=1)
        bot.set_ylabel(f"{_ylabel(metric)}\nminus own base")
        bot.set_xlabel("number of layers n that are random or come from the other task")
        bot.grid(alpha=0.3)
        bot.legend(fontsize=7.5, loc="best", ncol=2)
    else:
        _empty(bot, "no transfer or random-weights networks with their base")
    bot.set_title("all normalised by subtracting their own base accuracy", fontsize=10)
    for ax in (tl, tr, bot):
        if not ax.texts:  # panels that say what is missing keep no ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or "Figure 3: performance degradation vs. layer", fontsize=11)
    return fig


def decomposition_figure(df: pd.DataFrame, metric: str = "final", split: str | None = None,
                         confidence: float = 0.95, title: str | None = None) -> Figure:
    """Co-adaptation and specificity loss per n with their confidence intervals."""
    dec = decomposition(df, metric, split, confidence)
    _, split = _pick_split(df, split)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.set_gid("decomposition")
    styles = {"co-adaptation": ("BnB", -0.08), "specificity": ("AnB", 0.08), "transfer": ("base", 0.0)}
    for effect, (style, dx) in styles.items():
        e = dec[dec.effect == effect]
        if e.empty:
            continue
        st = STYLE[style]
        err = np.nan_to_num(np.vstack([e.ci_pp, e.ci_pp]))  # no bar where one replicate gives no interval
        color = "0.45" if effect == "transfer" else st["edge"]
        ax.errorbar(e.n + dx, e.mean_pp, yerr=err, color=color, marker=st["marker"], ms=6, capsize=3,
                    mfc=st["face"], mec=color, lw=1.0 if effect == "transfer" else 1.6,
                    ls="--" if effect == "transfer" else "-", label=f"{effect}: {EFFECTS[effect].split(':')[0]}",
                    gid=effect)
    ax.axhline(0, color="black", lw=0.8, ls=":")
    ax.set_xlabel("layer n")
    ax.set_ylabel("accuracy lost (percentage points)")
    ax.grid(alpha=0.3)
    if len(dec):
        ax.set_xticks(sorted(dec.n.unique()))
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no BnB / AnB networks with their base")
    k = int(dec.replicates.max()) if len(dec) else 0
    what = f"{confidence:.0%} t intervals over {k} replicates" if k > 1 else stats.NO_INTERVAL
    ax.set_title(title or f"Decomposition ({split} split), {what}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- files and report

def markdown_table(table: pd.DataFrame, digits: int = 3, index: str = "treatment", prefix: str = "n=") -> str:
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join([index, *[f"{prefix}{c}" for c in cols]]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for idx, row in table.iterrows():
        cells = ["" if pd.isna(v) else (f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v))
                 for v in row.values]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def effects_table(eff: pd.DataFrame) -> pd.DataFrame:
    """effects() as one row per treatment and one column per n: "+1.23 ± 0.45" points."""
    if eff.empty:
        return pd.DataFrame()
    cells = eff.assign(v=[stats.pm(m, h) for m, h in zip(eff.mean_pp, eff.ci_pp)])
    wide = cells.pivot(index="label", columns="n", values="v")
    return wide.reindex([lab for lab in LABELS if lab in wide.index]).fillna("")


def caption(metric: str, replicates=None, confidence: float = 0.95) -> str:
    """What every saved table says under it: its accuracy metric and what its ± means."""
    text = f"Accuracy: {_ylabel(metric)}."
    return text if replicates is None else f"{text} {stats.interval_note(replicates, confidence)}"


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=130)
    atomic_write_bytes(path, buf.getvalue())


def write_table(root, df: pd.DataFrame | None = None) -> Path | None:
    """Write cells.csv (one row per finished cell; ``df``: load(root), when already loaded) and
    history.csv (every evaluation of every network); returns cells.csv's path, or None if no
    cell is done."""
    root = Path(root)
    df = load(root) if df is None else df
    if df.empty:
        return None
    path = root / "cells.csv"
    atomic_write_bytes(path, df.drop(columns="history", errors="ignore").to_csv(index=False).encode())
    atomic_write_bytes(root / "history.csv", history_frame(df).to_csv(index=False).encode())
    return path


def write_figures(root, metric: str = "final", overlay_original: bool = False,
                  df: pd.DataFrame | None = None) -> list[Path]:
    """Draw every figure and table of a sweep folder and its report.md; returns the files written."""
    root = Path(root)
    return write_report(load(root) if df is None else df, root, metric, overlay_original, title=root.name)


def write_report(df: pd.DataFrame, out, metric: str = "final", overlay_original: bool = False,
                 title: str = "") -> list[Path]:
    """Figures, tables and report.md for the networks in ``df``, under the folder ``out``.
    Files of the "best10" metric carry a "-best10" suffix, so both can sit side by side."""
    out = Path(out)
    if df.empty:
        return []
    d = _acc(df, metric)
    sfx = "" if metric_column(metric) == "val_top1" else "-best10"
    figdir = out / "figures"
    written: list[Path] = []

    def save_fig(fig, stem):
        for ext in ("png", "pdf"):
            _save(fig, figdir / f"{stem}{sfx}.{ext}")
            written.append(figdir / f"{stem}{sfx}.{ext}")
        return f"figures/{stem}{sfx}.png"

    def save_table(table, stem, md):
        atomic_write_bytes(figdir / f"{stem}{sfx}.csv", table.to_csv(float_format="%.4f").encode())
        atomic_write_bytes(figdir / f"{stem}{sfx}.md", (md + "\n").encode())
        written.extend([figdir / f"{stem}{sfx}.csv", figdir / f"{stem}{sfx}.md"])
        return md

    splits = sorted(d.split.dropna().unique(), key=lambda s: (s != "random", s))
    main_split = splits[0] if splits else None
    dm = d[d.split == main_split]
    counts = d.groupby(["split", "label"]).size().unstack(fill_value=0)
    reps = dm.groupby(REPLICATE).ngroups
    dirs = directions(dm)
    pooled = ("both directions pooled (footnote 3 of the paper: AnA counts as BnB, BnA as AnB; the base "
              "pools baseA and baseB)" if len(dirs) > 1 else
              f"target task {''.join(dirs)} only (every network against base{''.join(dirs)} of its replicate)")
    rep = [f"# {title or 'transferlab'}: analysis", "",
           f"{len(d)} networks from {', '.join(sorted(d.sweep.unique()))}. Accuracy: {_ylabel(metric)}. "
           f"{main_split} split: {reps} replicate(s) (split seed x training seed), {pooled}.", "",
           markdown_table(counts, digits=0, index="split", prefix=""), ""]
    notes = caveats(df, metric)  # df: the collapsed networks, which d leaves out, are a caveat too
    if notes:
        rep += ["## Caveats", "", *[f"- {w}" for w in notes], ""]

    bases = dm[dm.treatment == "base"]
    at_plateau = int(bases.plateau.eq(True).sum())
    rep += ["## Convergence", ""]
    if not has_curves(d):
        rep += ["No learning curves: these networks come without their evaluations (the original study "
                "published final accuracies only), so whether they converged is not known.", ""]
    else:
        rep += [f"![learning curves]({save_fig(learning_curves(d, main_split, f'Learning curves: {title} ({main_split} split)'), 'learning_curves')})", "",
                f"{at_plateau} of {len(bases)} base network(s) at a plateau; {int(d.plateau.eq(True).sum())} of "
                f"{len(d)} networks in all (criterion: {convergence.CRITERION}). Networks with fewer than 3 "
                f"evaluations cannot be judged.", ""]

    rep += ["## Figure 2: transferability by layer", "",
            f"![Figure 2]({save_fig(figure2(d, metric, main_split, overlay_original, f'Figure 2: {title} ({main_split} split)'), 'figure2')})", "",
            "Top: every network (base at n = 0; BnB, BnB+, AnB, AnB+ shifted left/right). Bottom: means. "
            "The gap between base and BnB is lost co-adaptation; between BnB and AnB, features too specific "
            "to task A; AnB+ above BnB+ means transfer followed by fine-tuning generalises better than the same "
            "training without the transfer."
            + (" Dashed: the original study's means on the right axis, same scale, aligned at its base." if overlay_original else ""), ""]

    eff = effects(d, metric, main_split)
    rep += [f"## Each treatment minus its own base ({main_split} split), points", ""]
    if len(eff):
        md = markdown_table(effects_table(eff), index="treatment") + "\n\n" + caption(metric, eff.replicates)
        save_table(eff.set_index(["label", "n"]), "effects", md)
        rep += [md, ""]
    else:
        rep += ["Not computed: no network with its own base.", ""]

    has_dis = d[(d.split == "dissimilar")].label.eq("AnB").any()
    has_rw = d.label.eq("random").any()
    rep += ["## Figure 3: dissimilar tasks and random weights", ""]
    if has_dis or has_rw:
        rep += [f"![Figure 3]({save_fig(figure3(d, metric, overlay_original), 'figure3')})", "",
                "Top left: frozen transfer between the man-made and the natural task, one line per target task. "
                "Top right: the first n layers left random and frozen. Bottom: each network minus its own base, "
                "so the three experiments compare." + (" Dashed: the original study." if overlay_original else ""), ""]
    else:
        rep += ["Not drawn: these sweeps have neither a dissimilar split nor random-weights networks "
                "(run `split=dissimilar`, or add `random` to `treatments`).", ""]

    t1 = table1(d, metric, main_split)
    rep += [f"## Table 1: boost of AnB+ over controls ({main_split} split)", ""]
    if t1["AnB+"].sum():
        from . import reference

        paper = paper_table1(reference.networks())
        paper.index = [int(s.split("-")[0]) for s in paper.index]
        starts = [int(s.split("-")[0]) for s in t1.index]
        shown = pd.DataFrame({
            "replicates": t1.replicates.values,
            "AnB+ nets": t1["AnB+"].values,
            "over own base (pp)": [stats.pm(v, c) for v, c in zip(t1.over_base_pp, t1.over_base_ci_pp)],
            "over BnB+ (pp)": [stats.pm(v, c) for v, c in zip(t1.over_selffer_pp, t1.over_selffer_ci_pp)],
            "paper, same start to n=7: over base / BnB+": [
                f"{paper.over_base_pp.get(s, np.nan):.1f} / {paper.over_selffer_pp.get(s, np.nan):.1f}"
                if s in paper.index else "" for s in starts]}, index=t1.index)
        md = (markdown_table(shown, index="layers", prefix="") + "\n\n" + caption(metric, t1.replicates)
              + " Over own base: each AnB+ network minus its own base; over BnB+: minus the BnB+ of the same "
              "replicate, target and n (the paper's control: a BnB+ gets the same extra training). The paper's "
              "column is its own pooled computation (all AnB+ minus all bases, no pairing, no interval) on the "
              "original study's per-network accuracies (ImageNet, mean of 10 best evaluations).")
        save_table(t1, "table1", md)
        rep += [md, ""]
    else:
        rep += ["Not computed: no fine-tuned transfer (AnB+) networks.", ""]

    dec = decomposition(d, metric, main_split)
    rep += [f"## Decomposition: co-adaptation vs. specificity ({main_split} split)", ""]
    if len(dec):
        wide = dec.assign(v=[stats.pm(m, h) for m, h in zip(dec.mean_pp, dec.ci_pp)])
        wide = wide.pivot(index="effect", columns="n", values="v").reindex([e for e in EFFECTS if e in set(dec.effect)])
        md = (markdown_table(wide.fillna(""), index="loss (pp)") + "\n\n" + caption(metric, dec.replicates)
              + " Each BnB is paired with the base and the AnB of its own replicate and target. "
              + " ".join(f"{k}: {v}." for k, v in EFFECTS.items()))
        save_table(dec.set_index(["effect", "n"]), "decomposition", md)
        rep += [f"![decomposition]({save_fig(decomposition_figure(d, metric, main_split), 'decomposition')})", "", md, ""]
    else:
        rep += ["Not computed: no frozen selffer (BnB) or transfer (AnB) networks.", ""]

    rep += ["## Mean accuracy per treatment and n", ""]
    for s in splits:
        table = summary(d, metric, s)
        stem = "summary" if s == main_split else f"summary-{s}"
        md = (markdown_table(table) + "\n\n" + caption(metric) + " Means over networks; n = 0 is the mean of "
              "the own bases. No interval here: the paired differences with their intervals are above.")
        save_table(table, stem, md)
        rep += [f"{s} split (n = 0 is the base):", "", md, ""]

    path = out / f"report{sfx}.md"
    atomic_write_bytes(path, "\n".join(rep).encode())
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.analysis",
                                description="Figures, tables and a report from one or several sweep folders.")
    p.add_argument("sweeps", nargs="*", help="sweep folders, e.g. results/synthetic-random results/synthetic-dissimilar")
    p.add_argument("--metric", choices=list(METRICS), default="final",
                   help="final: accuracy at the last evaluation; best10: mean of the 10 best evaluations "
                        "(the original plots' measure; needs 10 evaluations per network)")
    p.add_argument("--overlay-original", action="store_true",
                   help="draw the original study's results (shipped reference data) on Figures 2 and 3")
    p.add_argument("--original", action="store_true",
                   help="analyse the original study's own networks instead of sweeps (the paper's figures "
                        "and Table 1; writes to --out, default results/yosinski2014)")
    p.add_argument("--out", help="where to write (default: the sweep folder; for several, <parent>/<a>+<b>)")
    args = p.parse_args(argv)
    if args.original == bool(args.sweeps):
        p.error("give sweep folders, or --original (not both)")
    if args.original:
        from . import reference

        df, metric, overlay = reference.networks(), "best10", False
        out = Path(args.out or Path("results") / reference.SWEEP)
    else:
        roots = [Path(s) for s in args.sweeps]
        for root in roots:
            if not (root / "cells").is_dir():
                print(f"error: {root} is not a sweep folder (it has no cells/ subfolder)", file=sys.stderr)
                return 2
        out = Path(args.out) if args.out else roots[0] if len(roots) == 1 else \
            roots[0].parent / "+".join(r.name for r in roots)
        df, metric, overlay = load(*roots), args.metric, args.overlay_original
        if df.empty:
            print(f"error: {', '.join(map(str, roots))} hold(s) no finished cell yet", file=sys.stderr)
            return 1
    try:
        _acc(df, metric)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in (write_table(out, df), out / "history.csv"):
        print(f"wrote {path}")
    for path in write_report(df, out, metric, overlay, title=out.name):
        print(f"wrote {path}")
    print(console_summary(df, metric))
    return 0


def console_summary(df: pd.DataFrame, metric: str = "final") -> str:
    """What a sweep and the CLI print at the end: each treatment minus its own base with its
    interval (or the words saying there is none), and the caveats."""
    eff = effects(df, metric)
    _, split = _pick_split(df, None)
    lines = [f"{split} split, each treatment minus its own base (points; {_ylabel(metric)}):",
             markdown_table(effects_table(eff)) if len(eff) else "(no network with its own base)",
             stats.interval_note(eff.replicates) if len(eff) else ""]
    lines += [f"caveat: {w}" for w in caveats(df, metric)]
    return "\n".join(line for line in lines if line)


if __name__ == "__main__":
    sys.exit(main())

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
- Footnote 3 of the paper: networks trained toward task A are the same treatment as those
  toward B, relabelled (AnA is counted as BnB, BnA as AnB), so every function pools both
  directions. The ``label`` column already carries the pooled name (BnB, BnB+, AnB, AnB+).
- A replicate is one (sweep, split, split seed, training seed, target task): the unit over
  which paired differences (a network minus its own base) and confidence intervals are taken.
- ``metric``: "final" (accuracy at the last evaluation) or "best10" (mean of the 10 best
  validation evaluations of the run, the measure of the original plots).
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

from .store import SweepStore, atomic_write_bytes

COLUMNS = ["sweep", "key", "name", "label", "treatment", "source", "target", "n", "finetune", "frozen_layers",
           "split", "split_seed", "seed", "num_layers", "target_classes", "val_top1", "val_top5", "val_loss",
           "best10_top1", "evaluations", "train_loss", "epochs", "wall_time", "train_time", "images_per_s",
           "device"]
METRICS = {"final": "val_top1", "best10": "best10_top1"}
METRIC_TEXT = {"val_top1": "top-1 accuracy (final evaluation)",
               "best10_top1": "top-1 accuracy (mean of 10 best evaluations)"}
REPLICATE = ["sweep", "split", "split_seed", "seed", "target"]
TASK_NAMES = {"dissimilar": {"A": "man-made", "B": "natural"}}  # data/splits.py: A = man-made
FIG2 = ["base", "BnB", "BnB+", "AnB", "AnB+"]

# The paper's markers and colours (Figure 2 caption, section 4.2): base white circles, BnB
# dark blue dots, BnB+ light blue, AnB dark red diamonds, AnB+ light red diamonds, dissimilar
# transfer orange hexagons. The random-weights colour is not named in the text: purple squares.
STYLE = {
    "base":       dict(face="white", edge="black", marker="o", label="base"),
    "BnB":        dict(face="#14279b", edge="#14279b", marker="o", label="selffer BnB"),
    "BnB+":       dict(face="#8fb4f2", edge="#4a72c4", marker="o", label="selffer BnB$^+$"),
    "AnB":        dict(face="#a50f15", edge="#a50f15", marker="D", label="transfer AnB"),
    "AnB+":       dict(face="#f7a39b", edge="#d0473f", marker="D", label="transfer AnB$^+$"),
    "dissimilar": dict(face="#f28e1c", edge="#b35c00", marker="h", label="transfer AnB, dissimilar split"),
    "random":     dict(face="#8e63c0", edge="#55308a", marker="s", label="random weights, frozen"),
}
OFFSETS = {"base": 0.0, "BnB": -0.21, "BnB+": -0.07, "AnB": 0.07, "AnB+": 0.21}
ORIGINAL = "Yosinski et al. 2014 (ImageNet)"


# --------------------------------------------------------------------------- records -> frame

def records_frame(records: list[dict], sweep: str = "") -> pd.DataFrame:
    """One row per finished record; ``best10_top1`` averages the 10 best of all evaluations."""
    rows = []
    for r in records:
        if r.get("status") != "done":
            continue
        m = r["metrics"]
        evals = [h["val_top1"] for h in r.get("history", []) if h.get("val_top1") is not None]
        rows.append({
            **{k: r.get(k) for k in ("key", "name", "label", "treatment", "source", "target", "n",
                                     "finetune", "frozen_layers", "split", "split_seed", "seed", "num_layers",
                                     "target_classes", "wall_time", "train_time", "images_per_s", "device")},
            "sweep": sweep, "val_top1": m.get("val_top1"), "val_top5": m.get("val_top5"),
            "val_loss": m.get("val_loss"), "train_loss": m.get("train_loss"), "epochs": m.get("epoch"),
            "best10_top1": float(np.mean(sorted(evals)[-10:])) if evals else np.nan, "evaluations": len(evals),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("val_top1", "val_top5", "best10_top1", "num_layers"):
        df[col] = pd.to_numeric(df[col]).astype(float)
    return df.sort_values(["sweep", "split", "split_seed", "seed", "target", "n", "treatment"]).reset_index(drop=True)


def load(*roots) -> pd.DataFrame:
    """One row per finished cell of one or several sweep folders (e.g. a random-split and a
    dissimilar-split sweep); the ``sweep`` column tells them apart."""
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


def metric_column(metric: str) -> str:
    """"final" -> val_top1, "best10" -> best10_top1 (column names are accepted too)."""
    if metric in METRICS:
        return METRICS[metric]
    if metric in METRICS.values():
        return metric
    raise ValueError(f"metric={metric!r} is not valid; allowed: {', '.join(METRICS)}")


def _acc(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that have the metric, with it copied to column ``acc``."""
    col = metric_column(metric)
    if len(df) and df[col].isna().all():
        hint = " (the original study published only mean-of-10-best accuracies: use metric='best10')" \
            if col == "val_top1" and "best10_top1" in df and df.best10_top1.notna().any() else ""
        raise ValueError(f"no network has a {col} value{hint}")
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


# --------------------------------------------------------------------------- statistics

def _t_quantile(q: float, dof: float) -> float:
    from scipy.stats import t

    return float(t.ppf(q, dof))


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval (NaN with fewer than 2 values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan
    if len(v) < 2:
        return float(v.mean()), np.nan
    se = v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), _t_quantile(0.5 + confidence / 2, len(v) - 1) * float(se)


def diff_ci(a, b, confidence: float = 0.95) -> tuple[float, float]:
    """mean(a) - mean(b) and the half-width of Welch's t interval (independent samples)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, np.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return diff, 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, _t_quantile(0.5 + confidence / 2, dof) * float(np.sqrt(va + vb))


# --------------------------------------------------------------------------- tables

def summary(df: pd.DataFrame, metric: str = "final", split: str | None = None) -> pd.DataFrame:
    """Mean accuracy per treatment (rows) and n (columns) of one split; the base sits at n = 0."""
    d, _ = _pick_split(_acc(df, metric), split)
    rows = {}
    base = d[d.treatment == "base"].acc.mean()
    for label in ["BnB", "BnB+", "AnB", "AnB+", "random"]:
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
    base = d[d.treatment == "base"].groupby(REPLICATE, dropna=False).acc.mean().rename("base_acc")
    out = d[d.treatment != "base"].join(base, on=REPLICATE)
    out["rel"] = out.acc - out.base_acc
    return out[out.rel.notna()]


def table1(df: pd.DataFrame, metric: str = "final", split: str | None = None,
           starts: tuple[int, ...] = (1, 3, 5), confidence: float = 0.95) -> pd.DataFrame:
    """Table 1: mean boost of AnB+ over baseB and over BnB+, for layers start..L-1.

    As in the paper: pool every AnB+ network with n in the range and subtract the mean of all
    base networks of the split (baseA and baseB: footnote 3), resp. the mean of every BnB+
    network in the same range. On the original study's numbers this gives the paper's
    1.6/1.4, 1.8/1.4 and 2.1/1.7 points. Values are percentage points; the ``ci`` columns are
    half-widths of Welch's t interval, which treats the pooled networks as independent.
    """
    d, _ = _pick_split(_acc(df, metric), split)
    L = _depth(d) if len(d) else 0
    base = d[d.treatment == "base"].acc
    rows = []
    for lo in starts:
        if lo > L - 1:
            continue
        in_range = d.n.between(lo, L - 1)
        ft, self_ft = d[in_range & (d.label == "AnB+")].acc, d[in_range & (d.label == "BnB+")].acc
        over_base, over_base_ci = diff_ci(ft, base, confidence)
        over_self, over_self_ci = diff_ci(ft, self_ft, confidence)
        rows.append({"layers": f"{lo}-{L - 1}", "AnB+": len(ft), "BnB+": len(self_ft), "base": len(base),
                     "over_base_pp": 100 * over_base, "over_base_ci_pp": 100 * over_base_ci,
                     "over_selffer_pp": 100 * over_self, "over_selffer_ci_pp": 100 * over_self_ci})
    cols = ["layers", "AnB+", "BnB+", "base", "over_base_pp", "over_base_ci_pp", "over_selffer_pp",
            "over_selffer_ci_pp"]
    return pd.DataFrame(rows, columns=cols).set_index("layers")


EFFECTS = {"co-adaptation": "base − BnB: fragile co-adapted features lost when layers n+1.. are retrained",
           "specificity": "BnB − AnB: features of layers 1..n too specific to task A",
           "transfer": "base − AnB: the whole transfer gap (the sum of the two)"}


def decomposition(df: pd.DataFrame, metric: str = "final", split: str | None = None,
                  confidence: float = 0.95) -> pd.DataFrame:
    """The drop of frozen transfer per n, split in two (paper section 4.1, interpretation 4):
    co-adaptation loss (base − BnB) and specificity loss (BnB − AnB), plus their sum (base − AnB).

    Differences are paired within a replicate (a BnB against the base and the AnB of the same
    split seed, training seed and target task); ``mean_pp`` is their mean over replicates and
    ``ci_low_pp``/``ci_high_pp`` the Student-t interval, in percentage points.
    """
    d, _ = _pick_split(_acc(df, metric), split)
    cols = ["effect", "n", "replicates", "mean_pp", "ci_low_pp", "ci_high_pp"]
    frozen = d[d.label.isin(["BnB", "AnB"])]
    if frozen.empty:
        return pd.DataFrame(columns=cols)
    wide = frozen.pivot_table(index=REPLICATE + ["n"], columns="label", values="acc", aggfunc="mean")
    wide = wide.reindex(columns=["BnB", "AnB"])
    base = d[d.treatment == "base"].groupby(REPLICATE).acc.mean().rename("base")
    wide = wide.join(base, on=REPLICATE)
    losses = {"co-adaptation": wide.base - wide.BnB, "specificity": wide.BnB - wide.AnB,
              "transfer": wide.base - wide.AnB}
    rows = []
    for effect, loss in losses.items():
        for n, v in loss.dropna().groupby(level="n"):
            mean, half = mean_ci(v.values, confidence)
            rows.append({"effect": effect, "n": int(n), "replicates": len(v), "mean_pp": 100 * mean,
                         "ci_low_pp": 100 * (mean - half), "ci_high_pp": 100 * (mean + half)})
    return pd.DataFrame(rows, columns=cols)


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
    fig = Figure(figsize=(7.5, 8.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.25, 1])
    for lab in FIG2:
        sub = d[d.label == lab]
        if len(sub):
            _points(top, sub.n + OFFSETS[lab], sub.acc, lab, label=f"{STYLE[lab]['label']} ({len(sub)})", gid=lab)
    base = d[d.treatment == "base"].acc.mean()
    means = summary(d, metric) if len(d) else pd.DataFrame()
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
    bottom.set_title("means per treatment (both directions pooled, footnote 3)", fontsize=9)
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
            means = _curve(r[r.treatment == "base"].acc.mean(), r[r.label == "AnB"])
            ln = _line(tl, means.index, means.values, "AnB", gid="random-split:AnB",
                       label="random split: AnB means (Figure 2)")
            ln.set(lw=0.9, alpha=0.7, ms=4)
        _finish_panel(tl, metric)
    else:
        _empty(tl, "no dissimilar-split transfer networks\n(run a sweep with split=dissimilar)")
    tl.set_title("dissimilar tasks: man-made ↔ natural", fontsize=10)

    rw = d[d.label == "random"]
    if len(rw):
        b = d[d.treatment == "base"].merge(rw[REPLICATE].drop_duplicates(), on=REPLICATE)  # their own bases
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
        err = np.vstack([e.mean_pp - e.ci_low_pp, e.ci_high_pp - e.mean_pp])
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
    ax.set_title(title or f"Decomposition ({split} split), {int(confidence * 100)}% CIs over replicates", fontsize=10)
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


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=130)
    atomic_write_bytes(path, buf.getvalue())


def _pm(v, ci) -> str:
    return "" if pd.isna(v) else (f"{v:+.2f}" + ("" if pd.isna(ci) else f" ± {ci:.2f}"))


def write_table(root) -> Path | None:
    """Write cells.csv (one row per finished cell); returns its path, or None if no cell is done."""
    root = Path(root)
    df = load(root)
    if df.empty:
        return None
    path = root / "cells.csv"
    atomic_write_bytes(path, df.to_csv(index=False).encode())
    return path


def write_figures(root, metric: str = "final", overlay_original: bool = False) -> list[Path]:
    """Draw every figure and table of a sweep folder and its report.md; returns the files written."""
    root = Path(root)
    return write_report(load(root), root, metric, overlay_original, title=root.name)


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

    splits = sorted(d.split.dropna().unique(), key=lambda s: (s != "random", s))
    main_split = splits[0] if splits else None
    counts = d.groupby(["split", "label"]).size().unstack(fill_value=0)
    rep = [f"# {title or 'transferlab'}: analysis", "",
           f"{len(d)} networks from {', '.join(sorted(d.sweep.unique()))}; accuracy: {_ylabel(metric)}. "
           "Both directions are pooled (footnote 3 of the paper): AnA counts as BnB, BnA as AnB.", "",
           markdown_table(counts, digits=0, index="split", prefix=""), ""]

    rep += ["## Figure 2: transferability by layer", "",
            f"![Figure 2]({save_fig(figure2(d, metric, main_split, overlay_original, f'Figure 2: {title} ({main_split} split)'), 'figure2')})", "",
            "Top: every network (base at n = 0; BnB, BnB+, AnB, AnB+ shifted left/right). Bottom: means. "
            "The gap between base and BnB is lost co-adaptation; between BnB and AnB, features too specific "
            "to task A; AnB+ above base means transfer followed by fine-tuning generalises better."
            + (" Dashed: the original study's means on the right axis, same scale, aligned at its base." if overlay_original else ""), ""]

    has_dis = d[(d.split == "dissimilar")].label.eq("AnB").any()
    has_rw = d.label.eq("random").any()
    rep += ["## Figure 3: dissimilar tasks and random weights", ""]
    if has_dis or has_rw:
        rep += [f"![Figure 3]({save_fig(figure3(d, metric, overlay_original), 'figure3')})", "",
                "Top left: frozen transfer between the man-made and the natural task, one line per target task. "
                "Top right: the first n layers left random and frozen. Bottom: each network minus its own base, "
                "so the three experiments compare: the gap grows faster for dissimilar tasks, and random "
                "filters fall below transferred ones." + (" Dashed: the original study." if overlay_original else ""), ""]
    else:
        rep += ["Not drawn: these sweeps have neither a dissimilar split nor random-weights networks "
                "(run `split=dissimilar`, or add `random` to `treatments`).", ""]

    t1 = table1(d, metric, main_split)
    rep += [f"## Table 1: boost of AnB+ over controls ({main_split} split)", ""]
    if t1["AnB+"].sum():
        from . import reference

        paper = table1(reference.networks(), "best10", "random")
        paper.index = [int(s.split("-")[0]) for s in paper.index]
        starts = [int(s.split("-")[0]) for s in t1.index]
        shown = pd.DataFrame({
            "AnB+ nets": t1["AnB+"].values,
            "over baseB (pp)": [_pm(v, c) for v, c in zip(t1.over_base_pp, t1.over_base_ci_pp)],
            "over BnB+ (pp)": [_pm(v, c) for v, c in zip(t1.over_selffer_pp, t1.over_selffer_ci_pp)],
            "paper, same start to n=7: over baseB / BnB+": [f"{paper.over_base_pp.get(s, np.nan):.1f} / {paper.over_selffer_pp.get(s, np.nan):.1f}"
                                         if s in paper.index else "" for s in starts]}, index=t1.index)
        save_table(t1, "table1", markdown_table(shown, index="layers", prefix=""))
        rep += [markdown_table(shown, index="layers", prefix=""), "",
                "Every AnB+ network with n in the range is pooled and the mean of all base networks "
                "(resp. of all BnB+ networks in the range) subtracted, as in the paper. ± is the half-width "
                "of a 95% Welch interval treating networks as independent. The paper's column is recomputed "
                "from the original study's per-network accuracies (ImageNet, layers 1-7, 3-7, 5-7).", ""]
    else:
        rep += ["Not computed: no fine-tuned transfer (AnB+) networks.", ""]

    dec = decomposition(d, metric, main_split)
    rep += [f"## Decomposition: co-adaptation vs. specificity ({main_split} split)", ""]
    if len(dec):
        wide = dec.assign(v=[f"{m:.2f} [{lo:.2f}, {hi:.2f}] ({k})" for m, lo, hi, k in
                             zip(dec.mean_pp, dec.ci_low_pp, dec.ci_high_pp, dec.replicates)])
        wide = wide.pivot(index="effect", columns="n", values="v").reindex([e for e in EFFECTS if e in set(dec.effect)])
        save_table(dec.set_index(["effect", "n"]), "decomposition", markdown_table(wide, index="loss (pp)"))
        rep += [f"![decomposition]({save_fig(decomposition_figure(d, metric, main_split), 'decomposition')})", "",
                markdown_table(wide, index="loss (pp)"), "",
                "Mean loss in percentage points [95% t-interval] (replicates): each BnB is paired with the base "
                "and the AnB of its own replicate (split seed x training seed x target task). "
                + " ".join(f"{k}: {v}." for k, v in EFFECTS.items()), ""]
    else:
        rep += ["Not computed: no frozen selffer (BnB) or transfer (AnB) networks.", ""]

    rep += ["## Mean accuracy per treatment and n", ""]
    for s in splits:
        table = summary(d, metric, s)
        stem = "summary" if s == main_split else f"summary-{s}"
        save_table(table, stem, markdown_table(table))
        rep += [f"{s} split (n = 0 is the base):", "", markdown_table(table), ""]

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
                        "(the original plots' measure)")
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
    atomic_write_bytes(out / "cells.csv", df.to_csv(index=False).encode())
    print(f"wrote {out / 'cells.csv'}")
    for path in write_report(df, out, metric, overlay, title=out.name):
        print(f"wrote {path}")
    print(markdown_table(summary(df, metric)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Files: cells.csv, history.csv, the figures and tables of a sweep and its report.md; and what
a sweep and the CLI print at the end.

write_report is a list of sections; each returns its markdown lines and the figures and tables
it wants saved (``Save``), and one loop writes them, in the order the sections ask for them."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import convergence, stats
from ..stats import REPLICATE
from ..store import atomic_write_bytes
from .figures import decomposition_figure, figure2, figure3, has_curves, learning_curves
from .frame import _acc, _pick_split, _ylabel, directions, history_frame, load, metric_column
from .tables import (EFFECTS, caption, caveats, decomposition, effects, effects_table, markdown_table,
                     paper_table1, summary, table1)


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
    from .estimates import load_cka

    root = Path(root)
    return write_report(load(root) if df is None else df, root, metric, overlay_original, title=root.name,
                        cka=load_cka(root))


class Save(NamedTuple):
    """One file set a section wants written under figures/: a Figure (png and pdf), or a table
    (csv) with its markdown (md)."""
    stem: str
    item: Figure | pd.DataFrame
    md: str = ""


@dataclass
class _Report:
    """What every section reads: the networks (``df`` all of them, ``d`` those with the metric,
    less the collapsed) and the report's main split."""
    df: pd.DataFrame
    d: pd.DataFrame
    metric: str
    overlay_original: bool
    title: str
    sfx: str
    splits: list
    main_split: str | None
    dm: pd.DataFrame
    cka: pd.DataFrame | None = None   # cka.csv rows (transferlab.cka.sweep_cka), if measured

    def ref(self, stem: str) -> str:
        """The report's link to a saved figure."""
        return f"figures/{stem}{self.sfx}.png"


def _overview(r: _Report):
    d, dm, main_split = r.d, r.dm, r.main_split
    counts = d.groupby(["split", "label"]).size().unstack(fill_value=0)
    reps = dm.groupby(REPLICATE).ngroups
    dirs = directions(dm)
    pooled = ("both directions pooled (footnote 3 of the paper: AnA counts as BnB, BnA as AnB; the base "
              "pools baseA and baseB)" if len(dirs) > 1 else
              f"target task {''.join(dirs)} only (every network against base{''.join(dirs)} of its replicate)")
    rep = [f"# {r.title or 'transferlab'}: analysis", "",
           f"{len(d)} networks from {', '.join(sorted(d.sweep.unique()))}. Accuracy: {_ylabel(r.metric)}. "
           f"{main_split} split: {reps} replicate(s) (split seed x training seed), {pooled}.", "",
           markdown_table(counts, digits=0, index="split", prefix=""), ""]
    notes = caveats(r.df, r.metric)  # df: the collapsed networks, which d leaves out, are a caveat too
    if notes:
        rep += ["## Caveats", "", *[f"- {w}" for w in notes], ""]
    return rep, []


def _convergence(r: _Report):
    d, main_split = r.d, r.main_split
    bases = r.dm[r.dm.treatment == "base"]
    at_plateau = int(bases.plateau.eq(True).sum())
    rep = ["## Convergence", ""]
    if not has_curves(d):
        rep += ["No learning curves: these networks come without their evaluations (the original study "
                "published final accuracies only), so whether they converged is not known.", ""]
        return rep, []
    fig = learning_curves(d, main_split, f"Learning curves: {r.title} ({main_split} split)")
    rep += [f"![learning curves]({r.ref('learning_curves')})", "",
            f"{at_plateau} of {len(bases)} base network(s) at a plateau; {int(d.plateau.eq(True).sum())} of "
            f"{len(d)} networks in all (criterion: {convergence.CRITERION}). Networks with fewer than 3 "
            f"evaluations cannot be judged.", ""]
    return rep, [Save("learning_curves", fig)]


def _figure2(r: _Report):
    fig = figure2(r.d, r.metric, r.main_split, r.overlay_original, f"Figure 2: {r.title} ({r.main_split} split)")
    rep = ["## Figure 2: transferability by layer", "",
           f"![Figure 2]({r.ref('figure2')})", "",
           "Top: every network (base at n = 0; BnB, BnB+, AnB, AnB+ shifted left/right). Bottom: means. "
           "The gap between base and BnB is lost co-adaptation; between BnB and AnB, features too specific "
           "to task A; AnB+ above BnB+ means transfer followed by fine-tuning generalises better than the same "
           "training without the transfer."
           + (" PnB, PnB+ (green triangles): units 1..n from the pretrained network of model.weights, frozen or "
              "fine-tuned, against the same own base." if r.d.label.isin(["PnB", "PnB+"]).any() else "")
           + (" Dashed: the original study's means on the right axis, same scale, aligned at its base."
              if r.overlay_original else ""), ""]
    return rep, [Save("figure2", fig)]


def _effects(r: _Report):
    eff = effects(r.d, r.metric, r.main_split)
    rep = [f"## Each treatment minus its own base ({r.main_split} split), points", ""]
    if not len(eff):
        return rep + ["Not computed: no network with its own base.", ""], []
    md = markdown_table(effects_table(eff), index="treatment") + "\n\n" + caption(r.metric, eff.replicates)
    return rep + [md, ""], [Save("effects", eff.set_index(["label", "n"]), md)]


def _figure3(r: _Report):
    d = r.d
    has_dis = d[(d.split == "dissimilar")].label.eq("AnB").any()
    has_rw = d.label.eq("random").any()
    rep = ["## Figure 3: dissimilar tasks and random weights", ""]
    if not (has_dis or has_rw):
        rep += ["Not drawn: these sweeps have neither a dissimilar split nor random-weights networks "
                "(run `split=dissimilar`, or add `random` to `treatments`).", ""]
        return rep, []
    fig = figure3(d, r.metric, r.overlay_original)
    rep += [f"![Figure 3]({r.ref('figure3')})", "",
            "Top left: frozen transfer between the man-made and the natural task, one line per target task. "
            "Top right: the first n layers left random and frozen. Bottom: each network minus its own base, "
            "so the three experiments compare." + (" Dashed: the original study." if r.overlay_original else ""), ""]
    return rep, [Save("figure3", fig)]


def _table1(r: _Report):
    t1 = table1(r.d, r.metric, r.main_split)
    rep = [f"## Table 1: boost of AnB+ over controls ({r.main_split} split)", ""]
    if not t1["AnB+"].sum():
        return rep + ["Not computed: no fine-tuned transfer (AnB+) networks.", ""], []
    from .. import reference

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
    md = (markdown_table(shown, index="layers", prefix="") + "\n\n" + caption(r.metric, t1.replicates)
          + " Over own base: each AnB+ network minus its own base; over BnB+: minus the BnB+ of the same "
          "replicate, target and n (the paper's control: a BnB+ gets the same extra training). The paper's "
          "column is its own pooled computation (all AnB+ minus all bases, no pairing, no interval) on the "
          "original study's per-network accuracies (ImageNet, mean of 10 best evaluations).")
    return rep + [md, ""], [Save("table1", t1, md)]


def _decomposition(r: _Report):
    dec = decomposition(r.d, r.metric, r.main_split)
    rep = [f"## Decomposition: co-adaptation vs. specificity ({r.main_split} split)", ""]
    if not len(dec):
        return rep + ["Not computed: no frozen selffer (BnB) or transfer (AnB) networks.", ""], []
    wide = dec.assign(v=[stats.pm(m, h) for m, h in zip(dec.mean_pp, dec.ci_pp)])
    wide = wide.pivot(index="effect", columns="n", values="v").reindex([e for e in EFFECTS if e in set(dec.effect)])
    md = (markdown_table(wide.fillna(""), index="loss (pp)") + "\n\n" + caption(r.metric, dec.replicates)
          + " Each BnB is paired with the base and the AnB of its own replicate and target. "
          + " ".join(f"{k}: {v}." for k, v in EFFECTS.items()))
    fig = decomposition_figure(r.d, r.metric, r.main_split)
    rep += [f"![decomposition]({r.ref('decomposition')})", "", md, ""]
    return rep, [Save("decomposition", dec.set_index(["effect", "n"]), md), Save("decomposition", fig)]


def _summaries(r: _Report):
    rep, saves = ["## Mean accuracy per treatment and n", ""], []
    for s in r.splits:
        table = summary(r.d, r.metric, s)
        stem = "summary" if s == r.main_split else f"summary-{s}"
        md = (markdown_table(table) + "\n\n" + caption(r.metric) + " Means over networks; n = 0 is the mean of "
              "the own bases. No interval here: the paired differences with their intervals are above.")
        saves.append(Save(stem, table, md))
        rep += [f"{s} split (n = 0 is the base):", "", md, ""]
    return rep, saves


def _estimates(r: _Report):
    from . import estimates as E

    has_cka = r.cka is not None and len(r.cka) > 0
    if not (r.dm.label.isin(E.PROBES).any() or has_cka):
        return [], []
    est = E.estimates_frame(r.d, r.cka, r.metric, r.main_split)
    fig = E.estimates_figure(r.d, r.cka, r.metric, r.main_split, f"Cheap estimates: {r.title} ({r.main_split} split)")
    table = E.estimates_table(est) if len(est) else pd.DataFrame()
    pred, cost = E.predictions(est) if len(est) else pd.DataFrame(), E.costs(r.dm, r.cka)
    rep = ["## Cheap estimates: linear probes and CKA", "", f"![estimates]({r.ref('estimates')})", "",
           "A probe (BnB-probe, AnB-probe, PnB-probe) is a linear classifier (probe.method: ridge or softmax "
           "regression) on the frozen unit-n activations of baseB, baseA or the pretrained network, trained on the "
           "target task (its L2 penalty chosen on a held-out part of the training images) and scored on the same "
           "validation images as the cells; no network is trained. CKA(baseA, baseB) compares the two bases' "
           "unit-n representations of the target's validation images (1: the same up to a rotation and a scale); "
           "on the right, CKA of each fine-tuned cell with the network it started from shows how far fine-tuning "
           "moved each unit.", ""]
    saves = [Save("estimates", fig)]
    if len(table):
        md = markdown_table(table.T, digits=2, index="per n")
        saves.append(Save("estimates_table", table, md))
        rep += [f"Means over {E.replicates(est)} replicate(s) per n: accuracies and differences in %, CKA as "
                "it is (drop = BnB - AnB, drop_pretrained = BnB - PnB, probe_gap = BnB-probe - AnB-probe):", "", md, ""]
    if len(pred):
        shown = pred.assign(rho=[stats.pm(m, h, 2) for m, h in zip(pred.rho, pred.half)],
                            error=[stats.pm(m, h, 1).lstrip("+") for m, h in zip(pred.error_pp, pred.error_half)])
        rep += ["How well each estimate predicts the transfer drop BnB - AnB across n: rho is Spearman's rank "
                "correlation within a replicate (1: the same order of n as the trained cells), error the mean "
                "absolute difference in points from what it estimates in accuracy units (the probe gap from the "
                "drop, AnB-probe from AnB; CKA has no such units); means over replicates:", "",
                markdown_table(shown.set_index("estimate")[["rho", "error", "replicates", "n_values"]].astype(str),
                               index="estimate", prefix=""),
                "", stats.interval_note(pred.replicates), ""]
    elif len(est):
        rep += ["No rank correlation: it needs the frozen cells (treatments transfer and selffer) and 3 or more "
                "values of n beside the estimates.", ""]
    if len(cost):
        shown = cost.assign(networks=cost.networks.astype(int).astype(str), seconds=cost.seconds.map("{:.1f}".format))
        rep += ["Cost (wall time, seconds; cells from their records, CKA per pair of networks):", "",
                markdown_table(shown.set_index("what"), index="what", prefix=""), ""]
    return rep, saves


SECTIONS = [_overview, _convergence, _figure2, _effects, _figure3, _table1, _decomposition, _estimates,
            _summaries]


def write_report(df: pd.DataFrame, out, metric: str = "final", overlay_original: bool = False,
                 title: str = "", cka: pd.DataFrame | None = None) -> list[Path]:
    """Figures, tables and report.md for the networks in ``df``, under the folder ``out``.
    Files of the "best10" metric carry a "-best10" suffix, so both can sit side by side."""
    out = Path(out)
    if df.empty:
        return []
    d = _acc(df, metric)
    sfx = "" if metric_column(metric) == "val_top1" else "-best10"
    splits = sorted(d.split.dropna().unique(), key=lambda s: (s != "random", s))
    main_split = splits[0] if splits else None
    r = _Report(df, d, metric, overlay_original, title, sfx, splits, main_split, d[d.split == main_split], cka)
    figdir = out / "figures"
    rep: list[str] = []
    written: list[Path] = []
    for section in SECTIONS:
        lines, saves = section(r)
        rep += lines
        for save in saves:
            if isinstance(save.item, Figure):
                paths = [figdir / f"{save.stem}{sfx}.{ext}" for ext in ("png", "pdf")]
                for path in paths:
                    _save(save.item, path)
            else:
                paths = [figdir / f"{save.stem}{sfx}.csv", figdir / f"{save.stem}{sfx}.md"]
                atomic_write_bytes(paths[0], save.item.to_csv(float_format="%.4f").encode())
                atomic_write_bytes(paths[1], (save.md + "\n").encode())
            written += paths
    path = out / f"report{sfx}.md"
    atomic_write_bytes(path, "\n".join(rep).encode())
    written.append(path)
    return written


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



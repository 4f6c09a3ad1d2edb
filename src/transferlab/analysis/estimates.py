"""The cheap estimates beside the real transfer curve: probe accuracies and CKA per unit, how
well each predicts the transfer drop (BnB - AnB) across n, and what each cost.

Pure DataFrame functions and a matplotlib Figure; CKA itself is computed by
``transferlab.cka.sweep_cka`` (``python -m transferlab.analysis <sweep> --cka``), which
writes ``cka.csv`` into the sweep folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import stats
from ..stats import REPLICATE
from .frame import OWN_BASE, _acc, _pick_split, _ylabel

# name -> (column of estimates_frame, sign: sign * column grows with the predicted drop, the column
# of the sweep it estimates directly in accuracy units or None, the drop it predicts)
ESTIMATES = {
    "probe gap (BnB-probe - AnB-probe)": ("probe_gap", 1, "drop", "drop"),
    "AnB-probe accuracy (lower: larger drop)": ("AnB-probe", -1, "AnB", "drop"),
    "1 - linear CKA(baseA, baseB)": ("cka_linear", -1, None, "drop"),
    "1 - RBF CKA(baseA, baseB)": ("cka_rbf", -1, None, "drop"),
    "PnB-probe accuracy, for BnB - PnB": ("PnB-probe", -1, "PnB", "drop_pretrained"),
}
PROBES = ("BnB-probe", "AnB-probe", "PnB-probe")


def load_cka(*roots) -> pd.DataFrame:
    """The cka.csv rows of sweep folders (empty when none was measured)."""
    frames = [pd.read_csv(Path(r) / "cka.csv") for r in roots if (Path(r) / "cka.csv").exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _bases_cka(cka: pd.DataFrame) -> pd.DataFrame:
    """CKA(baseA, baseB) per replicate, target and unit, a column per kernel (cka_linear, cka_rbf)."""
    if cka is None or cka.empty:
        return pd.DataFrame(columns=[*OWN_BASE, "n"])
    b = cka[cka.kind == "bases"].rename(columns={"unit": "n"})
    return b.pivot_table(index=[*OWN_BASE, "n"], columns="kernel", values="cka").add_prefix("cka_").reset_index()


def estimates_frame(df: pd.DataFrame, cka: pd.DataFrame | None = None, metric: str = "final",
                    split: str | None = None) -> pd.DataFrame:
    """One row per replicate, target and n: the accuracy of every frozen and probe cell there
    (columns by label), ``drop`` = BnB - AnB, ``probe_gap`` = BnB-probe - AnB-probe, and
    CKA(baseA, baseB) at unit n."""
    d, _ = _pick_split(_acc(df, metric), split)
    cells = d[d.label.isin(["BnB", "AnB", "PnB", *PROBES])]
    if cells.empty:
        return pd.DataFrame()
    out = cells.pivot_table(index=[*OWN_BASE, "n"], columns="label", values="acc").reset_index()
    out.columns.name = None
    for a, b, col in (("BnB", "AnB", "drop"), ("BnB-probe", "AnB-probe", "probe_gap"), ("BnB", "PnB", "drop_pretrained")):
        out[col] = out[a] - out[b] if {a, b} <= set(out) else np.nan
    bc = _bases_cka(cka)
    if len(bc):
        bc = bc.astype({"split_seed": int, "seed": int, "n": int})
        out = out.merge(bc, on=[*OWN_BASE, "n"], how="left")
    return out


def predictions(est: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """How well each estimate predicts the drop across n: Spearman's rank correlation of the
    estimate (signed so that larger means a larger predicted drop) with BnB - AnB (BnB - PnB for
    the pretrained probe) over the n of
    each replicate (3 or more n needed), then the mean and t interval over replicates; and for an
    estimate in accuracy units, its mean absolute error in points against what it estimates
    (the probe gap against the drop, AnB-probe against AnB), per replicate then over replicates."""
    from scipy.stats import spearmanr

    rows = []
    for name, (col, sign, target, drop) in ESTIMATES.items():
        if col not in est or est[col].isna().all() or drop not in est or est[drop].isna().all():
            continue
        rhos, errors = [], []
        for _, g in est.dropna(subset=[col, drop]).groupby(OWN_BASE):
            if g.n.nunique() >= 3 and g[col].nunique() > 1 and g[drop].nunique() > 1:
                rhos.append(spearmanr(sign * g[col], g[drop]).statistic)
            if target is not None:
                errors.append(100 * (g[col] - g[target]).abs().mean())
        rho, err = stats.t_interval(rhos, confidence), stats.t_interval(errors, confidence)
        rows.append({"estimate": name, "rho": rho.mean, "half": rho.half, "replicates": rho.replicates,
                     "n_values": int(est.dropna(subset=[col, drop]).n.nunique()),
                     "error_pp": err.mean, "error_half": err.half})
    return pd.DataFrame(rows, columns=["estimate", "rho", "half", "replicates", "n_values", "error_pp", "error_half"])


def costs(df: pd.DataFrame, cka: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seconds of wall time per kind of cell (the probes, the frozen cells they estimate) and of CKA."""
    rows = []
    for label in ("AnB", "BnB", *PROBES):
        sub = df[df.label == label]
        if len(sub):
            rows.append({"what": f"{label} cells", "networks": len(sub), "seconds": float(sub.wall_time.sum())})
    if cka is not None and len(cka):
        pairs = cka.drop_duplicates(["sweep", "split", "split_seed", "seed", "target", "pair"])
        for kind, g in pairs.groupby("kind"):
            rows.append({"what": f"CKA, {kind}", "networks": len(g), "seconds": float(g.seconds.sum())})
    return pd.DataFrame(rows, columns=["what", "networks", "seconds"])


def _mean_by_n(est: pd.DataFrame, col: str) -> pd.Series:
    return est.groupby("n")[col].mean() if col in est else pd.Series(dtype=float)


def estimates_figure(df: pd.DataFrame, cka: pd.DataFrame | None = None, metric: str = "final",
                     split: str | None = None, title: str | None = None) -> Figure:
    """Left: AnB and BnB (the sweep) and the probes' accuracy per n, with CKA(baseA, baseB) at
    unit n on the right axis. Right (when measured): CKA of every fine-tuned cell with the
    network it started from, unit by unit (rows: the cell's n), mean over replicates."""
    from .figures import STYLE

    est = estimates_frame(df, cka, metric, split)
    ft = cka[cka.kind == "finetuned"] if cka is not None and len(cka) else pd.DataFrame()
    kinds = sorted(ft.cell.dropna().unique()) if len(ft) else []
    fig = Figure(figsize=(6.8 + 3.2 * len(kinds), 4.4), layout="constrained")
    axes = fig.subplots(1, 1 + len(kinds), squeeze=False)[0]
    ax = axes[0]
    for label in ("BnB", "AnB", "PnB", *PROBES):
        y = _mean_by_n(est, label)
        if len(y):
            st = STYLE[label]
            probe = label.endswith("-probe")
            ax.plot(y.index, y.values, ls="--" if probe else "-", lw=1.4, color=st["edge"], marker=st["marker"],
                    ms=6, markerfacecolor=st["face"], markeredgecolor=st["edge"], label=label)
    ax.set_xlabel("n (units copied from the source; the probe reads unit n)")
    ax.set_ylabel(_ylabel(metric))
    if "cka_linear" in est or "cka_rbf" in est:
        ax2 = ax.twinx()
        for kernel, ls in (("linear", "-"), ("rbf", ":")):
            y = _mean_by_n(est, f"cka_{kernel}")
            if len(y):
                ax2.plot(y.index, y.values, ls=ls, color="0.45", marker="x", ms=5, label=f"CKA(baseA, baseB), {kernel}")
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("CKA(baseA, baseB) at unit n", color="0.35")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7.5, loc="lower left")
    else:
        ax.legend(fontsize=7.5, loc="lower left")
    if len(est):
        ax.set_xticks(sorted(est.n.unique()))
    ax.grid(alpha=0.3)
    for ax, kind in zip(axes[1:], kinds):
        g = ft[(ft.cell == kind) & (ft.kernel == "linear")]
        m = g.groupby(["cell_n", "unit"]).cka.mean().unstack()
        im = ax.imshow(m.values, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower",
                       extent=(m.columns.min() - 0.5, m.columns.max() + 0.5, m.index.min() - 0.5, m.index.max() + 0.5))
        ax.set_title(f"CKA({kind} cell, its start) per unit", fontsize=9)
        ax.set_xlabel("unit")
        ax.set_ylabel(f"n of the {kind} cell")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def estimates_table(est: pd.DataFrame) -> pd.DataFrame:
    """Means over replicates per n, in percent (accuracies, differences) and CKA as is."""
    cols = [c for c in ("BnB", "AnB", "drop", "PnB", "drop_pretrained", *PROBES, "probe_gap", "cka_linear", "cka_rbf")
            if c in est and est[c].notna().any()]
    t = est.groupby("n")[cols].mean()
    pct = [c for c in cols if not c.startswith("cka")]
    t[pct] = 100 * t[pct]
    return t


def replicates(est: pd.DataFrame) -> int:
    return est.groupby(REPLICATE).ngroups if len(est) else 0

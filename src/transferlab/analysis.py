"""Records -> tidy DataFrame -> the paper's figures and tables.

    python -m transferlab.analysis results/<sweep>     # writes cells.csv, figures/, tables

In a notebook:
    from transferlab import analysis
    df = analysis.load("results/synthetic-random")
    analysis.figure2(df)          # a matplotlib Figure
    analysis.summary(df)          # mean accuracy per treatment and n
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg") if "matplotlib.pyplot" not in sys.modules else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .store import SweepStore, atomic_write_bytes  # noqa: E402

COLUMNS = ["key", "name", "label", "treatment", "source", "target", "n", "finetune", "frozen_layers",
           "split", "split_seed", "seed", "target_classes", "val_top1", "val_top5", "val_loss",
           "best10_top1", "train_loss", "epochs", "wall_time", "train_time", "images_per_s", "device"]

# The paper's Figure 2 style: base white, selffer blue, transfer red; fine-tuned lighter.
STYLE = {
    "base":  dict(color="white", edgecolor="black", marker="o", label="baseB"),
    "BnB":   dict(color="#1f3fbf", edgecolor="#1f3fbf", marker="o", label="selffer BnB"),
    "BnB+":  dict(color="#8fb0ff", edgecolor="#1f3fbf", marker="D", label="selffer BnB$^+$"),
    "AnB":   dict(color="#c0201a", edgecolor="#c0201a", marker="o", label="transfer AnB"),
    "AnB+":  dict(color="#ff9e8f", edgecolor="#c0201a", marker="D", label="transfer AnB$^+$"),
    "random": dict(color="#7f7f7f", edgecolor="#404040", marker="s", label="random, frozen"),
}
OFFSETS = {"base": 0.0, "BnB": -0.15, "BnB+": -0.05, "AnB": 0.05, "AnB+": 0.15, "random": 0.0}


def records_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        if r.get("status") != "done":
            continue
        m = r["metrics"]
        tops = sorted((h["val_top1"] for h in r.get("history", [])), reverse=True)[:10]
        rows.append({
            **{k: r.get(k) for k in ("key", "name", "label", "treatment", "source", "target", "n",
                                     "finetune", "frozen_layers", "split", "split_seed", "seed",
                                     "target_classes", "wall_time", "train_time", "images_per_s", "device")},
            "val_top1": m.get("val_top1"), "val_top5": m.get("val_top5"), "val_loss": m.get("val_loss"),
            "best10_top1": float(np.mean(tops)) if tops else np.nan,
            "train_loss": m.get("train_loss"), "epochs": m.get("epoch"),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["split", "split_seed", "seed", "target", "n", "treatment"]).reset_index(drop=True)


def load(root) -> pd.DataFrame:
    """One row per finished cell of the sweep folder ``root``."""
    return records_frame(SweepStore(Path(root)).records())


def summary(df: pd.DataFrame, metric: str = "val_top1") -> pd.DataFrame:
    """Mean of ``metric`` per treatment (rows) and n (columns); the base sits at n = 0."""
    rows = {}
    base = df[df.treatment == "base"][metric].mean()
    for label in ["BnB", "BnB+", "AnB", "AnB+", "random"]:
        sub = df[df.label == label]
        if len(sub):
            rows[label] = {0: base, **sub.groupby("n")[metric].mean().to_dict()}
    out = pd.DataFrame(rows).T
    out.columns.name = "n"
    return out.reindex(sorted(out.columns), axis=1)


def figure2(df: pd.DataFrame, metric: str = "val_top1", title: str | None = None):
    """Figure 2 of the paper: top, every network as a point; bottom, lines through the means."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1.3, 1]})
    labels = [lab for lab in STYLE if lab == "base" or (df.label == lab).any()]
    for lab in labels:
        sub = df[df.label == lab]
        st = STYLE[lab]
        top.scatter(sub.n + OFFSETS[lab], sub[metric], s=36, c=st["color"], edgecolors=st["edgecolor"],
                    marker=st["marker"], label=st["label"], zorder=3, linewidths=1)
    means = summary(df, metric)
    for lab in means.index:
        st = STYLE[lab]
        row = means.loc[lab].dropna()
        bottom.plot(row.index, row.values, marker=st["marker"], color=st["edgecolor"],
                    markerfacecolor=st["color"], label=st["label"])
    base = df[df.treatment == "base"][metric].mean()
    for ax in (top, bottom):
        if np.isfinite(base):
            ax.axhline(base, color="black", lw=0.8, ls=":", zorder=1)
        ax.grid(alpha=0.3)
        ax.set_ylabel("top-1 accuracy" if metric == "val_top1" else metric)
    top.legend(loc="lower left", fontsize=8, ncol=2)
    bottom.legend(loc="lower left", fontsize=8, ncol=2)
    ns = sorted(df.n.unique())
    bottom.set_xticks(ns)
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    top.set_title(title or "Transferability by layer (Yosinski et al. 2014, Figure 2)")
    fig.tight_layout()
    return fig


def write_table(root) -> Path | None:
    """Write cells.csv (one row per finished cell); returns its path, or None if no cell is done."""
    root = Path(root)
    df = load(root)
    if df.empty:
        return None
    path = root / "cells.csv"
    atomic_write_bytes(path, df.to_csv(index=False).encode())
    return path


def write_figures(root) -> list[Path]:
    """Draw every figure and summary table of a sweep folder; returns the files written."""
    root = Path(root)
    df = load(root)
    out = []
    if df.empty:
        return out
    figdir = root / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    fig = figure2(df, title=f"{root.name}: top-1 accuracy by layer n")
    for ext in ("png", "pdf"):
        path = figdir / f"figure2.{ext}"
        _save(fig, path)
        out.append(path)
    plt.close(fig)
    table = summary(df)
    path = figdir / "summary.csv"
    atomic_write_bytes(path, table.to_csv(float_format="%.4f").encode())
    out.append(path)
    path = figdir / "summary.md"
    atomic_write_bytes(path, (markdown_table(table) + "\n").encode())
    out.append(path)
    return out


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(["treatment", *[f"n={c}" for c in cols]]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for idx, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row.values]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=130)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.analysis",
                                description="Regenerate a sweep's table and figures from its records.")
    p.add_argument("sweep", help="a sweep folder, e.g. results/synthetic-random")
    args = p.parse_args(argv)
    root = Path(args.sweep)
    if not (root / "cells").is_dir():
        print(f"error: {root} is not a sweep folder (it has no cells/ subfolder)", file=sys.stderr)
        return 2
    if write_table(root) is None:
        print(f"error: {root} holds no finished cell yet", file=sys.stderr)
        return 1
    for path in write_figures(root):
        print(f"wrote {path}")
    print(markdown_table(summary(load(root))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

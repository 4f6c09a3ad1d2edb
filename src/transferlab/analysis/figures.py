"""The paper's figures (matplotlib Figures, no pyplot) and the learning curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.figure import Figure  # no pyplot: no global backend state, inline notebooks unaffected

from .. import convergence, stats
from .. import treatments as T
from .frame import FIG2, OWN_BASE, TASK_NAMES, _acc, _pick_split, _ylabel, directions, own_bases
from .tables import EFFECTS, decomposition, relative, summary

# Each treatment's marker and colours (treatments.TABLE), and dissimilar-split transfer's: the
# paper's orange hexagons.
STYLE = {**{t.label: t.style for t in T.TABLE},
         "dissimilar": dict(face="#f28e1c", edge="#b35c00", marker="h", label="transfer AnB, dissimilar split")}
OFFSETS = {t.label: t.offset for t in T.TABLE if t.figure2}
ORIGINAL = "Yosinski et al. 2014 (ImageNet)"


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
    from .. import reference

    return _acc(reference.networks(), "best10")



def figure2(df: pd.DataFrame, metric: str = "final", split: str | None = None,
            overlay_original: bool = False, title: str | None = None) -> Figure:
    """Figure 2: top, every network as a point (both bases at n = 0; BnB, BnB+, AnB, AnB+ and, when
    trained, the pretrained PnB, PnB+ per n, shifted left/right); bottom, lines through the means.
    With ``overlay_original`` the original study's means are drawn dashed on a right axis of the
    same scale, aligned at the base."""
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
        top.legend(loc="best", fontsize=8, ncol=2)
        bottom.legend(handles, labels, loc="best", fontsize=8, ncol=2)
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



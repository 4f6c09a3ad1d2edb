"""The statistics tables: pure DataFrame functions (no files, no figures)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import convergence, stats
from .frame import LABELS, OWN_BASE, _acc, _depth, _pick_split, _ylabel, own_bases


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



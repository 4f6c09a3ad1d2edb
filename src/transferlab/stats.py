"""Intervals over replicates, the unit a sweep repeats.

A replicate is one (sweep, split, split seed, training seed): its networks share their bases
and the sources they copy from, so they are not independent samples. Every comparison is a
difference paired within a replicate (a network minus its own base, AnB+ minus the BnB+ of the
same n and target); the differences of one replicate are averaged into one value, and the
interval is Student's t over those values. With one replicate there is no interval, and the
tables say so in words.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REPLICATE = ["sweep", "split", "split_seed", "seed"]
NO_INTERVAL = "1 replicate: no interval"


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float      # half-width; NaN with fewer than 2 replicates
    replicates: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Mean and Student-t half-width of ``values`` (one per replicate)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Interval(np.nan, np.nan, 0)
    if len(v) < 2:
        return Interval(float(v.mean()), np.nan, 1)
    half = float(t.ppf(0.5 + confidence / 2, len(v) - 1)) * float(v.std(ddof=1)) / np.sqrt(len(v))
    return Interval(float(v.mean()), half, len(v))


def over_replicates(diffs: pd.DataFrame, by: list[str], value: str = "diff",
                    confidence: float = 0.95) -> pd.DataFrame:
    """Paired differences (one row per network or pair, REPLICATE columns + ``by`` + ``value``)
    -> one row per ``by`` group: replicates, networks, mean and interval, in the value's units.
    Within a replicate the differences are averaged first: the replicate is the unit."""
    cols = [*by, "replicates", "networks", "mean", "half", "low", "high"]
    if diffs.empty:
        return pd.DataFrame(columns=cols)
    per = diffs.groupby(REPLICATE + by, dropna=False)[value].agg(["mean", "size"]).reset_index()
    rows = []
    for key, g in (per.groupby(by, dropna=False) if by else [((), per)]):
        ci = t_interval(g["mean"], confidence)
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*key, ci.replicates, int(g["size"].sum()), ci.mean, ci.half, ci.low, ci.high])
    return pd.DataFrame(rows, columns=cols)


def pm(mean: float, half: float, digits: int = 2, scale: float = 1.0) -> str:
    """"+1.23 ± 0.45", or "+1.23" where there is no interval (the caption says why)."""
    if pd.isna(mean):
        return ""
    text = f"{scale * mean:+.{digits}f}"
    return text if pd.isna(half) else f"{text} ± {scale * half:.{digits}f}"


def interval_note(replicates, confidence: float = 0.95) -> str:
    """The caption that says what ± means for a table whose rows have these replicate counts."""
    ks = sorted({int(k) for k in replicates if k and k == k})
    if not ks:
        return "No paired networks: no interval."
    if ks[-1] < 2:
        return (f"{NO_INTERVAL} (train replicates with seed=0,1,2 or split.seed=0,1,2 for one); "
                "the values are single differences.")
    count = f"{ks[0]}-{ks[-1]}" if len(ks) > 1 else str(ks[0])
    one = f" Rows with {NO_INTERVAL}." if ks[0] < 2 else ""
    return (f"± is the half-width of a {confidence:.0%} Student-t interval over {count} replicates "
            f"(split seed x training seed), with differences paired within each replicate.{one}")

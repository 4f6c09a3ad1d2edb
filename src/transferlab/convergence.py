"""Has a network stopped learning? A stated criterion on its validation learning curve.

plateau: the validation top-1 accuracy gained over the last quarter of training is below
MIN_GAIN_PP points. The gain compares window means, not two single evaluations, so that the
epoch-to-epoch jitter of an evaluation does not decide: the mean of the evaluations in the last
10% of training steps minus the mean of those in the 10% of steps that end at 75% of training
(each window falls back to the evaluation nearest its end when it holds none).
"""
from __future__ import annotations

import numpy as np

MIN_GAIN_PP = 0.5
CRITERION = ("val top-1 gained over the last 25% of training < 0.5 points (mean of the evaluations "
             "in the last 10% of steps minus the mean of those in the 10% ending at 75%)")


def plateau(steps, values) -> dict:
    """{"gain_pp", "plateau", "criterion"}; plateau is None with fewer than 3 evaluations."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(v) < 3:
        return {"gain_pp": None, "plateau": None, "criterion": CRITERION}
    total = s[-1]

    def window(lo: float, hi: float) -> float:
        sel = (s > lo * total + 1e-9) & (s <= hi * total + 1e-9)
        return float(v[sel].mean()) if sel.any() else float(v[np.argmin(np.abs(s - hi * total))])

    gain = 100 * (window(0.9, 1.0) - window(0.65, 0.75))
    return {"gain_pp": gain, "plateau": bool(gain < MIN_GAIN_PP), "criterion": CRITERION}


def of_history(history: list[dict]) -> dict:
    """plateau() of a record's history (evaluations at ``step``, else at ``epoch``)."""
    evals = [h for h in history if h.get("val_top1") is not None]
    where = [h.get("step", h.get("epoch", i + 1)) for i, h in enumerate(evals)]
    return plateau(where, [h["val_top1"] for h in evals])

"""Has a network stopped learning? A stated criterion on its validation learning curve.

plateau: the validation top-1 accuracy gained over the last quarter of training is below
MIN_GAIN_PP points. The gain compares window means, not two single evaluations, so that the
epoch-to-epoch jitter of an evaluation does not decide: the mean of the evaluations in the last
10% of training steps minus the mean of those in the 10% of steps that end at 75% of training
(each window falls back to the evaluation nearest its end when it holds none).
"""
from __future__ import annotations

import math

import numpy as np

MIN_GAIN_PP = 0.5
EARLY, LATE = (0.65, 0.75), (0.9, 1.0)  # the two windows, as fractions of the training steps
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

    gain = 100 * (window(*LATE) - window(*EARLY))
    return {"gain_pp": gain, "plateau": bool(gain < MIN_GAIN_PP), "criterion": CRITERION}


def of_history(history: list[dict]) -> dict:
    """plateau() of a record's history (evaluations at ``step``, else at ``epoch``)."""
    evals = [h for h in history if h.get("val_top1") is not None]
    where = [h.get("step", h.get("epoch", i + 1)) for i, h in enumerate(evals)]
    return plateau(where, [h["val_top1"] for h in evals])


def collapse(history: list[dict], num_classes: int) -> str | None:
    """Why training has collapsed, or None. Collapsed: the network had learned (validation
    top-1 at least twice chance, or halfway from chance to 1 for two classes), and at its last
    two evaluations it is back at chance (top-1 within a quarter of that margin above 1/K and
    training loss >= 95% of ln K, the loss of a uniform guess). That is what a too-large step
    does to a ReLU network without normalisation: its units die and it does not recover (a
    NaN loss is caught separately)."""
    evals = [h for h in history if h.get("val_top1") is not None and h.get("train_loss") is not None]
    if num_classes < 2 or len(evals) < 3:
        return None
    chance = 1.0 / num_classes
    learned = min(2 * chance, (1 + chance) / 2)
    at_chance = chance + 0.25 * (learned - chance)
    best = max(h["val_top1"] for h in evals[:-2])
    last = evals[-2:]
    if best >= learned and all(h["val_top1"] <= at_chance and h["train_loss"] >= 0.95 * math.log(num_classes)
                               for h in last):
        return (f"training collapsed in epoch {math.ceil(last[-1]['epoch'])}: after reaching {best:.1%} val top-1 "
                f"the network is back at chance ({last[-1]['val_top1']:.1%}, training loss "
                f"{last[-1]['train_loss']:.3f} vs ln {num_classes} = {math.log(num_classes):.3f}): its units died, "
                f"so its accuracy measures the training, not the features")
    return None

"""The bench's self-check (python -m transferlab.bench --device cuda --quick): each verdict fails
when what it checks is broken."""
from __future__ import annotations

import copy

from transferlab.bench.check import TOLERANCE_POINTS, describe, self_check


def cell(frozen: int, ours_top1=0.40, plain_top1=0.38, loss=1.7, cache_layers=None, exact=True) -> dict:
    ours = {"val_top1": ours_top1, "train_loss": loss, "feature_cache_layers": frozen if cache_layers is None else cache_layers,
            "feature_cache_check": {"max_relative_difference": 0.0, "tolerance": 0.0, "exact": exact} if frozen else None}
    return {"frozen_layers": frozen, "runs": {"ours": ours, "plain": {"val_top1": plain_top1}}}


def result(**cells) -> dict:
    return {"networks": {"default": {"cells": cells}}}


GOOD = result(base=cell(0), frozen=cell(5), tuned=cell(0))


def test_a_healthy_bench_passes_every_check():
    checks = self_check(GOOD)
    assert len(checks) == 3 * 2 + 1 and all(ok for ok, _ in checks)
    assert describe(checks, {"precision": "bf16"}).startswith("self-check: 7/7 passed; the code path: precision=bf16")


def failed(r) -> list[str]:
    return [w for ok, w in self_check(r) if not ok]


def test_a_non_finite_loss_fails():
    assert failed(result(base=cell(0, loss=float("nan")))) == ["default base: training loss finite (nan)"]


def test_ours_far_behind_the_plain_loop_fails_near_or_ahead_passes():
    gap = TOLERANCE_POINTS / 100
    assert not failed(result(base=cell(0, ours_top1=0.5 - gap + 0.001, plain_top1=0.5)))
    assert not failed(result(base=cell(0, ours_top1=0.9, plain_top1=0.2)))  # ahead: not a broken path
    [why] = failed(result(base=cell(0, ours_top1=0.5 - gap - 0.01, plain_top1=0.5)))
    assert "the plain loop's 50.0% (at most 15 points behind: +16.0)" in why


def test_a_frozen_cell_without_its_checked_cache_fails():
    assert failed(result(frozen=cell(5, cache_layers=0)))
    assert failed(result(frozen=cell(5, exact=False)))
    broken = copy.deepcopy(GOOD)
    broken["networks"]["default"]["cells"]["frozen"]["runs"]["ours"]["feature_cache_check"] = None
    assert len(failed(broken)) == 1
    assert "FAIL default frozen: feature cache" in describe(self_check(broken), None)


def test_under_augmentation_a_frozen_cell_must_not_cache():
    r = {"networks": {"cifar": {"overrides": ["model=caffenet_cifar", "data.augment.flip=true"],
                                "cells": {"frozen": cell(5, cache_layers=0)}}}}
    r["networks"]["cifar"]["cells"]["frozen"]["runs"]["ours"]["feature_cache_check"] = None
    assert not failed(r)
    r["networks"]["cifar"]["cells"]["frozen"]["runs"]["ours"]["feature_cache_layers"] = 5
    assert failed(r) == ["cifar frozen: no feature cache under augmentation (cached layers: 5)"]

"""The bench's self-check: what must hold on a device before its speed numbers mean anything
(the one-minute GPU check is ``python -m transferlab.bench --device cuda --quick``)."""
from __future__ import annotations

import math

# Ours against the plain loop after the same steps of the same network: their batch orders and
# dropout masks differ, which moves a one-epoch run by up to ~12 points here (ours ahead); a broken
# code path (NaN, chance) falls far below. One-sided: ours ahead is no fault of ours.
TOLERANCE_POINTS = 15.0


def self_check(result: dict) -> list[tuple[bool, str]]:
    """(passed, what) for every cell of every network of a bench ``result``."""
    out = []
    for net, entry in result["networks"].items():
        for label, c in entry["cells"].items():
            ours, plain = c["runs"]["ours"], c["runs"]["plain"]
            what = f"{net} {label}"
            loss = ours.get("train_loss", float("nan"))
            out.append((math.isfinite(loss), f"{what}: training loss finite ({loss:.3f})"))
            behind = (plain["val_top1"] - ours["val_top1"]) * 100
            out.append((behind <= TOLERANCE_POINTS,
                        f"{what}: val top-1 {ours['val_top1']:.1%}, the plain loop's {plain['val_top1']:.1%} "
                        f"(at most {TOLERANCE_POINTS:.0f} points behind: {behind:+.1f})"))
            augmented = any(o.startswith("data.augment") for o in entry.get("overrides", []))
            if c["frozen_layers"] and augmented:  # random crops: the frozen layers' outputs change every epoch
                out.append((ours["feature_cache_layers"] == 0,
                            f"{what}: no feature cache under augmentation (cached layers: {ours['feature_cache_layers']})"))
            elif c["frozen_layers"]:  # a frozen cell trains from cached features, checked against the uncached path
                check = ours.get("feature_cache_check") or {}
                cached = ours["feature_cache_layers"] == c["frozen_layers"] and check.get("exact", False)
                diff = check.get("max_relative_difference")
                out.append((cached, f"{what}: feature cache of layers 1-{c['frozen_layers']} used and equal to "
                                    f"the uncached path (max relative difference {diff if diff is None else f'{diff:.1e}'}, "
                                    f"tolerance {check.get('tolerance')})"))
    return out


def describe(checks: list[tuple[bool, str]], fast_path: dict | None) -> str:
    failed = [w for ok, w in checks if not ok]
    head = (f"self-check: {len(checks) - len(failed)}/{len(checks)} passed"
            + (f"; the code path: {', '.join(f'{k}={v}' for k, v in fast_path.items())}" if fast_path else ""))
    return "\n".join([head] + [f"  {'ok  ' if ok else 'FAIL'} {w}" for ok, w in checks])

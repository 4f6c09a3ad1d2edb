"""The sweep CLI: overrides -> config -> plan -> train every cell -> table and figures.

    python -m transferlab.sweep                          # the default sweep
    python -m transferlab.sweep split=random n=1..7 seed=0,1 train.epochs=4
    python -m transferlab.sweep --cfg                    # print the composed config
    python -m transferlab.sweep dry_run=true             # print the plan only

Rerunning the same command skips the cells that are already finished.
"""
from __future__ import annotations

import json
import sys
import time

from omegaconf import OmegaConf

from .cells import Cell, plan
from .config import ConfigError, compose, results_root, sweep_name, validate
from .store import SweepStore, atomic_write_json, check_writable

# Config keys that do not change what a cell computes: they may differ between runs of one sweep.
NON_DEFINING = ("name", "results_dir", "n", "seed", "treatments", "directions", "device",
                "dry_run", "analyze", "save_checkpoints", "launcher")


def defining_config(cfg) -> dict:
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_DEFINING:
        c.pop(k, None)
    c["split"].pop("seed", None)
    for k in ("num_workers", "compile"):
        c["train"].pop(k, None)
    return c


def _diff(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def prepare(cfg) -> tuple[list[Cell], SweepStore]:
    """Validate everything and set up the sweep folder; no training yet."""
    validate(cfg)
    cells = plan(cfg)
    root = results_root(cfg)
    check_writable(root)
    store = SweepStore(root)
    meta_path = root / "sweep.json"
    defining = defining_config(cfg)
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())["config"]
        except (ValueError, KeyError):
            old = None
        if old is not None and old != defining:
            changes = "; ".join(_diff(old, defining)[:8])
            raise ConfigError(
                f"{root} holds a sweep with a different recipe ({changes}). Records of different "
                f"recipes must not be mixed: choose another name=... or remove that folder")
    atomic_write_json(meta_path, {"name": sweep_name(cfg), "config": defining})
    return cells, store


def write_splits(ctx, cells: list[Cell]) -> None:
    ds = ctx.dataset
    out = {"dataset": ds.name, "num_classes": ds.num_classes, "split": ctx.cfg.split.name, "splits": {}}
    for ss in sorted({c.split_seed for c in cells}):
        sp = ctx.split(ss)
        out["splits"][str(ss)] = {t: {"indices": list(sp.task(t)), "names": [ds.classes[i] for i in sp.task(t)]}
                                  for t in ("A", "B")}
    atomic_write_json(ctx.store.root / "splits.json", out)


def print_plan(cells: list[Cell], store: SweepStore) -> None:
    bases = [c for c in cells if c.treatment == "base"]
    print(f"plan: {len(bases)} base networks + {len(cells) - len(bases)} cells = {len(cells)} networks")
    for c in cells:
        dep = c.base_dependency
        done = " (done)" if store.is_done(c.key) else ""
        print(f"  {c.key:<28} {c.name:<7} needs {dep.key if dep else '-'}{done}")


def run_cells(ctx, cells: list[Cell]) -> dict:
    """Train every unfinished cell in this process; returns counts of done/skipped/failed."""
    store = ctx.store
    counts = {"trained": 0, "skipped": 0, "failed": 0}
    total, t0, trained_time = len(cells), time.time(), 0.0
    for i, cell in enumerate(cells, 1):
        head = f"[{i}/{total}] {cell.name} ({cell.key})"
        with store.lock(cell.key):
            if store.is_done(cell.key, need_model=cell.treatment == "base"):
                counts["skipped"] += 1
                print(f"{head}: already finished, skipped", flush=True)
                continue
            dep = cell.base_dependency
            if dep is not None and not store.is_done(dep.key, need_model=True):
                counts["failed"] += 1
                print(f"{head}: FAILED: its base {dep.key} did not finish", flush=True)
                continue
            print(f"{head}: training on task {cell.target}, {cell.frozen_layers} frozen layer(s)", flush=True)
            from .runner import run_cell

            rec = run_cell(ctx, cell, log=lambda m: print(f"  {cell.name} {m}", flush=True))
        trained_time += rec["wall_time"]
        if rec["status"] == "done":
            counts["trained"] += 1
            m = rec["metrics"]
            warn = ""
            if cell.treatment == "base" and m["val_top1"] < 2.0 / rec["target_classes"]:
                warn = "  WARNING: this base network is near chance; the sweep will measure nothing"
            print(f"{head}: val top1 {m['val_top1']:.1%} in {rec['wall_time']:.1f}s{warn}", flush=True)
        else:
            counts["failed"] += 1
            print(f"{head}: FAILED: {rec['error']}", flush=True)
        left = sum(1 for c in cells[i:] if not store.is_done(c.key))
        done_now = counts["trained"] + counts["failed"]
        eta = trained_time / max(1, done_now) * left
        print(f"progress: {i}/{total} cells, elapsed {time.time() - t0:.0f}s, ETA {eta:.0f}s", flush=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    show_cfg = "--cfg" in argv
    argv = [a for a in argv if a != "--cfg"]
    try:
        cfg = compose(argv)
        if show_cfg:
            print(OmegaConf.to_yaml(cfg))
            return 0
        cells, store = prepare(cfg)
        from .runner import SweepContext

        ctx = SweepContext(cfg, store)
        write_splits(ctx, cells)  # also builds the dataset and checks the split can be made
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sweep {sweep_name(cfg)} -> {store.root} on {ctx.device}", flush=True)
    if cfg.dry_run:
        print_plan(cells, store)
        return 0
    t0 = time.time()
    counts = run_cells(ctx, cells)
    from . import analysis

    table = analysis.write_table(store.root)
    if cfg.analyze and table is not None:
        for path in analysis.write_figures(store.root):
            print(f"wrote {path}")
    print(f"sweep finished in {time.time() - t0:.0f}s: {counts['trained']} trained, "
          f"{counts['skipped']} skipped, {counts['failed']} failed; records in {store.root}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

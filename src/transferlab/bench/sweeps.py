"""The whole default sweep both ways: transferlab.sweep as a user runs it, and the plain loop
training the same plan one network after another."""
from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from ..config import compose
from ..executors import cpu_cores
from .cells import torch_threads
from .reference import reference_cell


def our_sweep(device: torch.device) -> dict:
    """The default sweep run for real by ``transferlab.sweep`` (no figures): wall time and accuracies."""
    from .. import analysis, sweep

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = sweep.main([f"results_dir={tmp}", "analyze=false", f"device={device.type}"])
        wall = time.perf_counter() - t
        if rc != 0:
            raise RuntimeError(f"the default sweep failed (exit status {rc})")
        df = analysis.load(Path(tmp) / "synthetic-random")
    return {"wall": wall, "networks": len(df), "val_top1": dict(zip(df.name, df.val_top1))}


def plain_sweep(device: torch.device) -> dict:
    """The default sweep's plan trained with the plain loop, one network after another on every
    thread: the same networks (runner.build_cell_model: initialisation, copied and frozen
    layers), epochs and evaluations."""
    from ..cells import plan
    from ..runner import SweepContext, _seed_for, build_cell_model
    from ..store import SweepStore

    cfg = compose([f"device={device.type}"])
    with tempfile.TemporaryDirectory() as tmp:  # nothing is written there: the bases stay in memory
        ctx = SweepContext(cfg, SweepStore(tmp))
        bases, accs = {}, {}
        t0 = time.perf_counter()
        with torch_threads(cpu_cores()):
            for cell in plan(cfg):
                source = bases[cell.source].state_dict() if cell.base_dependency is not None else None
                model = build_cell_model(ctx, cell, source).to(device)
                torch.manual_seed(_seed_for(cell, "train"))
                task = ctx.task(cell.target, cell.split_seed)
                r = reference_cell(model, task, cfg, ctx.dataset.mean, ctx.dataset.std, device, int(cfg.train.epochs))
                if cell.treatment == "base":
                    bases[cell.target] = model
                accs[cell.name] = r["val_top1"]
        wall = time.perf_counter() - t0
    return {"wall": wall, "networks": len(accs), "val_top1": accs}


def sweeps_side_by_side(device: torch.device) -> dict:
    print("\nthe whole default sweep, ours (transferlab.sweep) and the plain loop, one after the other ...",
          flush=True)
    ours = our_sweep(device)
    print(f"  ours: {ours['wall']:.0f}s for {ours['networks']} networks", flush=True)
    plain = plain_sweep(device)
    print(f"  plain loop: {plain['wall']:.0f}s for {plain['networks']} networks", flush=True)
    speedup = plain["wall"] / ours["wall"]
    print(f"  speed-up {speedup:.2f}x", flush=True)
    return {"ours": ours, "plain": plain, "speedup": speedup, "epochs": int(compose([]).train.epochs)}

"""``python -m transferlab.bench``: run every cell and the sweep, print the table, write the JSON."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..executors import cpu_cores
from ..store import atomic_write_json, timestamp
from ..train import device_name, resolve_device
from . import folder
from .cells import CELLS, REFERENCES, Bench
from .check import describe, self_check
from .peak import matmul_peak
from .sweeps import sweeps_side_by_side

NETWORKS = {
    "default": [],
    "cifar": ["model=caffenet_cifar", "data.image_size=32", "data.augment.crop_padding=4",
              "data.augment.flip=true"],
}


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(args) -> dict:
    device = resolve_device(args.device)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 2)
    result = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
              "cores": cpu_cores(), "quick": quick, "repeat": repeat, "load_before": _load(),
              "started": timestamp()}
    print(f"transferlab bench on {result['device_name']}, torch {torch.__version__}, "
          f"load {result['load_before']}", flush=True)
    peak = matmul_peak(device)
    result["peak"] = peak
    print(f"dense matmul peak ({peak['dtype']}): {peak['flops'] / 1e9:.1f} GFLOP/s "
          f"({', '.join(f'{k}: {v / 1e9:.0f}' for k, v in peak['measured'].items())})", flush=True)

    result["networks"] = {}
    for net, overrides in NETWORKS.items():
        extra = list(overrides)
        if net == "cifar" and quick:
            extra.append("data.train_per_class=50")
        bench = Bench(extra, device)
        spe = max(1, len(bench.task.train) // int(bench.cfg.train.batch_size))
        if args.steps:  # rounded to whole epochs
            bench.cfg.train.epochs = max(1, round(args.steps / spe))
        elif quick or (net == "cifar" and device.type == "cpu"):  # ~10 s per epoch on 2 CPU cores
            bench.cfg.train.epochs = 1
        print(f"\n{net} network ({bench.cfg.model.input_size}px, {len(bench.task.train)} training images, "
              f"{bench.cfg.train.epochs} epoch(s) of {spe} steps per cell)", flush=True)
        print(HEADER, flush=True)
        cells = {}
        for label, (n, finetune) in CELLS.items():
            frozen = 0 if finetune else n
            c = bench.compare(n, frozen, repeat)
            start = c["runs"]["ours"]["feature_cache_layers"]
            c["flops_per_step"] = bench.flops(frozen, start)
            c["achieved_flops"] = c["flops_per_step"] * c["steps"] / c["runs"]["ours"]["step_time"]
            c["mfu"] = c["achieved_flops"] / peak["flops"]
            cells[label] = c
            print(_row(label, c), flush=True)
        result["networks"][net] = {"overrides": extra, "epochs": int(bench.cfg.train.epochs),
                                   "steps_per_epoch": spe, "cells": cells}

    result["folder"] = folder.compare(device, epochs=2 if quick else 6, repeat=repeat)
    print("\n" + folder.describe(result["folder"]), flush=True)
    if not quick and not args.no_sweep:
        result["sweep"] = sweeps_side_by_side(device)
    result["load_after"] = _load()
    result["self_check"] = [{"passed": ok, "what": w} for ok, w in self_check(result)]
    return result


HEADER = (f"{'cell':<16}{'steps':>6}{'ours img/s':>12}" + "".join(f"{'x ' + r:>26}" for r in REFERENCES)
          + f"{'GFLOP/step':>12}{'MFU':>7}")


def _row(label: str, c: dict) -> str:
    cache = f" (cache: layers 1-{c['runs']['ours']['feature_cache_layers']})" if c["runs"]["ours"]["feature_cache_layers"] else ""
    return (f"{label:<16}{c['steps']:>6}{c['images_per_s']['ours']:>12.0f}"
            + "".join(f"{c['speedup'][r]:>25.2f}x" for r in REFERENCES)
            + f"{c['flops_per_step'] / 1e9:>12.3f}{c['mfu']:>7.1%}{cache}")


def print_table(result: dict) -> None:
    print(f"\n== {result['device_name']}: dense {result['peak']['dtype']} matmul peak "
          f"{result['peak']['flops'] / 1e9:.1f} GFLOP/s; load {result['load_before']} -> {result['load_after']}")
    if result["load_before"] and result["load_before"][0] > 0.5 * (os.cpu_count() or 1):
        print("note: other processes were using the CPU when the run started (load average above); "
              "absolute numbers suffer, the side-by-side ratios less so")
    print("speed-up: the whole cell (training, evaluations, feature caching) of each reference over ours")
    for net, entry in result["networks"].items():
        print(f"\n{net} network, {entry['epochs']} epoch(s) per cell")
        print(HEADER)
        for label, c in entry["cells"].items():
            print(_row(label, c))
    if result.get("folder"):
        print("\n" + folder.describe(result["folder"]))
    if result.get("self_check"):
        fast = next(iter(next(iter(result["networks"].values()))["cells"].values()))["runs"]["ours"].get("fast_path")
        print("\n" + describe([(c["passed"], c["what"]) for c in result["self_check"]], fast))
    s = result.get("sweep")
    if s:
        print(f"\ndefault sweep ({s['ours']['networks']} networks x {s['epochs']} epochs), both measured: ours "
              f"{s['ours']['wall']:.0f}s, plain loop {s['plain']['wall']:.0f}s: {s['speedup']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one epoch per cell, smaller CIFAR-sized data, no sweep")
    p.add_argument("--steps", type=int, default=None, help="training steps per cell (rounded to whole epochs)")
    p.add_argument("--repeat", type=int, default=None, help="runs per side and cell; the fastest counts (default 2, quick 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--no-sweep", action="store_true", help="do not run the whole default sweep both ways")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/bench_<device>.json)")
    args = p.parse_args(argv)
    result = run(args)
    print_table(result)
    out = Path(args.out) if args.out else Path("results") / "bench" / f"bench_{resolve_device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"\nwrote {out}")
    return 0 if all(c["passed"] for c in result["self_check"]) else 1

"""Benchmark: how fast does our trainer train a sweep's cells on this device, against the plain
PyTorch fine-tuning loop?

    python -m transferlab.bench                 # full run (~10 min on 2 CPU cores)
    python -m transferlab.bench --quick         # ~2 min: one epoch per cell, no real sweep
    python -m transferlab.bench --steps 124 --repeat 3 --out bench.json

For the default network (16x16 synthetic data, no augmentation) and the CIFAR-sized network
(32x32 synthetic data with the CIFAR recipe's random crop and flip) it trains three cells: a
base, a frozen cell (n=5) and a fine-tuned cell (n=5+), each once with our trainer
(``train.train``: data on the device, batched augmentation, channels_last, frozen-prefix
feature cache, ...) and once with the reference loop: the standard recipe (PIL images through
``DataLoader(shuffle=True, num_workers=2)`` and torchvision transforms, frozen parameters with
``requires_grad=False``, the optimiser over the rest, forward, loss, backward, step, and a
validation pass per epoch). Both use the same network, batch size, optimiser, precision and
number of steps; runs alternate and the fastest of ``--repeat`` counts, so the ratio holds
on a busy machine too.

Reported per cell: training images/s (steps only) and the speed-up on the whole cell
(training, per-epoch evaluation, feature caching); the FLOPs of one training step as our
trainer runs it (``FlopCounterMode``, forward + backward), the achieved FLOP/s and its ratio
to the device's dense matmul peak measured in the same run (fp32 on a CPU: the best of MKL
``mm`` and oneDNN's GEMM; bf16 on CUDA) = model FLOP utilisation. And the default sweep
(2 bases + 4 treatments x 7 layers): our time and the reference loop's, estimated from a
measured cell of each kind (frozen n = 0..7) times the number of such cells; the full run also
times the real sweep (``transferlab.sweep``) for comparison.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .cells import plan
from .config import compose
from .data import ImageSet, load_dataset, make_split, task_view
from .models import build_model, copy_layers, freeze_layers
from .train import _autocast, make_batches, resolve_device, train

NETWORKS = {
    "default": [],
    "cifar": ["model=caffenet_cifar", "data.image_size=32", "data.augment.crop_padding=4",
              "data.augment.flip=true"],
}
CELLS = {"base": (0, False), "frozen n=5": (5, False), "fine-tuned n=5": (5, True)}


# --- device peak --------------------------------------------------------------------------

def _best_rate(fn, flops: float, device: torch.device, reps: int = 5, trials: int = 3) -> float:
    fn()
    best = 0.0
    for _ in range(trials):
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        best = max(best, flops * reps / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> dict:
    """Dense matmul FLOP/s: fp32 on a CPU, bf16 on CUDA; the best of the ways tried."""
    out = {}
    if device.type == "cuda":
        n = 8192
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        out["mm bf16 8192"] = _best_rate(lambda: a @ b, 2 * n**3, device, reps=20)
        dtype = "bf16"
    else:
        for n in (2048, 4096):
            a, b = torch.randn(n, n), torch.randn(n, n)
            out[f"mm fp32 {n} (MKL)"] = _best_rate(lambda: a @ b, 2 * n**3, device, reps=3 if n > 2048 else 8)
        # oneDNN's GEMM (a 1x1 convolution is a [HW, Cin] x [Cin, Cout] matmul) is faster than
        # MKL on some CPUs; the convolutions run on oneDNN, so the peak must include it.
        c, hw = 2048, 64
        x = torch.randn(1, c, hw, hw).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 1, 1).contiguous(memory_format=torch.channels_last)
        out[f"matmul fp32 {hw * hw}x{c}x{c} (oneDNN)"] = _best_rate(lambda: F.conv2d(x, w), 2 * c * c * hw * hw, device)
        dtype = "fp32"
    return {"flops": max(out.values()), "dtype": dtype, "measured": out}


# --- the reference loop ---------------------------------------------------------------------

class PILImages(torch.utils.data.Dataset):
    """An ImageSet served as PIL images, as torchvision's datasets serve them."""

    def __init__(self, s: ImageSet, transform):
        from PIL import Image

        self.images = [Image.fromarray(a) for a in s.x.permute(0, 2, 3, 1).numpy()]
        self.labels = s.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def reference_transforms(cfg, mean, std, train: bool):
    """Compose([RandomCrop(pad), RandomHorizontalFlip(), ToTensor(), Normalize()]), keeping the
    augmentations our config uses (the default synthetic recipe uses none)."""
    from torchvision import transforms as T

    aug = cfg.data.get("augment") or {}
    steps = []
    if train and aug.get("crop_padding"):
        steps.append(T.RandomCrop(cfg.model.input_size, padding=int(aug.crop_padding)))
    if train and aug.get("flip"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


def reference_cell(model, task, cfg, mean, std, device: torch.device, epochs: int,
                   eval_batch_size: int = 1000) -> dict:
    """Train ``model`` (frozen layers have requires_grad=False) with the standard loop."""
    from torch.utils.data import DataLoader

    t = cfg.train
    B = int(t.batch_size)
    pin = device.type == "cuda"
    train_loader = DataLoader(PILImages(task.train, reference_transforms(cfg, mean, std, True)), batch_size=B,
                              shuffle=True, num_workers=2, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(PILImages(task.val, reference_transforms(cfg, mean, std, False)),
                            batch_size=eval_batch_size, num_workers=2, pin_memory=pin)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                          nesterov=bool(t.nesterov) and t.momentum > 0)
    autocast = lambda: _autocast(device, t.precision)[0]  # noqa: E731
    steps, train_time, t0 = 0, 0.0, time.perf_counter()
    for _ in range(epochs):
        model.train()
        t1 = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            with autocast():
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        _sync(device)
        train_time += time.perf_counter() - t1
        model.eval()
        correct = 0
        with torch.no_grad(), autocast():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
    return {"wall": time.perf_counter() - t0, "step_time": train_time, "steps": steps}


# --- our trainer ------------------------------------------------------------------------------

def our_cell(model, frozen: int, task, cfg, mean, std, device: torch.device) -> dict:
    batches = make_batches(task, mean, std, device, cfg.train.batch_size, cfg.data.get("augment"))
    r = train(model, batches, cfg.train, frozen_layers=frozen, seed=0, log=lambda m: None)
    steps = batches.steps_per_epoch * int(cfg.train.epochs)
    return {"wall": r["train_time"], "step_time": r["train_time"] - r["eval_time"] - r["setup_time"],
            "steps": steps, "setup_time": r["setup_time"], "eval_time": r["eval_time"],
            "feature_cache_layers": r["feature_cache_layers"], "fast_path": r["fast_path"],
            "val_top1": r["metrics"]["val_top1"]}


def step_flops(model, frozen: int, start: int, x: torch.Tensor, y: torch.Tensor, device, precision) -> int:
    """FLOPs of one training step as the trainer runs it (forward from layer start+1, backward
    through the layers that learn)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter, _autocast(device, precision)[0]:
        out = m(x, start=start, no_grad_prefix=frozen)
        F.cross_entropy(out.float(), y).backward()
    return counter.get_total_flops()


# --- one network ------------------------------------------------------------------------------

class Bench:
    def __init__(self, overrides: list[str], device: torch.device):
        self.cfg = compose(overrides + [f"device={device.type}"])
        self.device = device
        self.ds = load_dataset(self.cfg.data)
        split = make_split(self.cfg.split.name, self.ds.num_classes, 0, self.ds.class_groups())
        self.task = task_view(self.ds, "B", list(split.task("B")))
        # The weights frozen and fine-tuned cells copy (the cost does not depend on them).
        self.source = build_model(self.cfg.model, self.task.num_classes, generator=torch.Generator().manual_seed(1))

    def model(self, n: int, frozen: int):
        m = build_model(self.cfg.model, self.task.num_classes, generator=torch.Generator().manual_seed(2))
        copy_layers(m, self.source, n)
        freeze_layers(m, frozen)
        return m.to(self.device)

    def ours(self, n: int, frozen: int) -> dict:
        return our_cell(self.model(n, frozen), frozen, self.task, self.cfg, self.ds.mean, self.ds.std, self.device)

    def reference(self, n: int, frozen: int) -> dict:
        return reference_cell(self.model(n, frozen), self.task, self.cfg, self.ds.mean, self.ds.std,
                              self.device, int(self.cfg.train.epochs))

    def flops(self, frozen: int, start: int) -> int:
        m = self.model(frozen, frozen)
        B = int(self.cfg.train.batch_size)
        S = self.cfg.model.input_size
        x = torch.randn(B, 3, S, S, device=self.device)
        with torch.no_grad():
            x = m.forward_prefix(x, start)
        y = torch.zeros(B, dtype=torch.long, device=self.device)
        return step_flops(m, frozen, start, x, y, self.device, self.cfg.train.precision)

    def compare(self, n: int, frozen: int, repeat: int) -> dict:
        """Our trainer and the reference loop, alternating; the fastest run of each counts."""
        runs = {"ours": [], "reference": []}
        for _ in range(repeat):
            runs["ours"].append(self.ours(n, frozen))
            runs["reference"].append(self.reference(n, frozen))
        best = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
        ours, ref = best["ours"], best["reference"]
        B = int(self.cfg.train.batch_size)
        out = {"n": n, "frozen_layers": frozen, "steps": ours["steps"], "batch_size": B,
               "ours": ours, "reference": ref,
               "ours_images_per_s": ours["steps"] * B / ours["step_time"],
               "reference_images_per_s": ref["steps"] * B / ref["step_time"],
               "speedup_cell": ref["wall"] / ours["wall"],
               "speedup_train_steps": ref["step_time"] / ours["step_time"],
               "walls": {k: [r["wall"] for r in v] for k, v in runs.items()}}
        return out


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(args) -> dict:
    device = resolve_device(args.device)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 2)
    result = {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "quick": quick, "repeat": repeat,
              "load_before": _load(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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
        cells = {}
        for label, (n, finetune) in CELLS.items():
            frozen = 0 if finetune else n
            c = bench.compare(n, frozen, repeat)
            start = c["ours"]["feature_cache_layers"]
            c["flops_per_step"] = bench.flops(frozen, start)
            c["flops_per_step_uncached"] = bench.flops(frozen, 0) if start else c["flops_per_step"]
            c["achieved_flops"] = c["flops_per_step"] * c["steps"] / c["ours"]["step_time"]
            c["mfu"] = c["achieved_flops"] / peak["flops"]
            cells[label] = c
            print(_row(label, c), flush=True)
        entry = {"overrides": extra, "epochs": int(bench.cfg.train.epochs), "steps_per_epoch": spe,
                 "cells": cells}
        if net == "default":
            entry["sweep"] = sweep_estimate(bench, cells, repeat)
        result["networks"][net] = entry

    if not quick and not args.no_sweep:
        result["networks"]["default"]["sweep"]["ours_measured_s"] = real_sweep(device)
    result["load_after"] = _load()
    return result


def sweep_estimate(bench: Bench, cells: dict, repeat: int) -> dict:
    """The default sweep's training time, ours and the reference loop's: a measured cell of
    each kind (frozen n = 0..7) times the number of such cells in the plan."""
    cfg = compose([])
    counts = collections.Counter(c.frozen_layers for c in plan(cfg))
    per = {0: cells["base"], 5: cells["frozen n=5"]}
    scale = int(cfg.train.epochs) / int(bench.cfg.train.epochs)
    for f in sorted(counts):
        if f not in per:
            per[f] = bench.compare(f, f, repeat)
    # Cells of a shorter run: the per-epoch part scales to the recipe's epochs, setup does not.
    def cell_time(r, side):
        setup = r[side].get("setup_time", 0.0)
        return setup + (r[side]["wall"] - setup) * scale
    ours = sum(counts[f] * cell_time(per[f], "ours") for f in counts)
    ref = sum(counts[f] * cell_time(per[f], "reference") for f in counts)
    out = {"cells": sum(counts.values()), "cells_by_frozen_layers": dict(sorted(counts.items())),
           "epochs": int(cfg.train.epochs), "measured_epochs": int(bench.cfg.train.epochs),
           "ours_estimated_s": ours, "reference_estimated_s": ref, "speedup_estimated": ref / ours,
           "per_frozen_layers": {f: {"ours_s": cell_time(r, "ours"), "reference_s": cell_time(r, "reference"),
                                     "speedup": r["speedup_cell"]} for f, r in sorted(per.items())}}
    print(f"default sweep ({out['cells']} networks x {out['epochs']} epochs), estimated from one "
          f"measured cell per frozen depth: ours {ours:.0f}s, reference loop {ref:.0f}s, "
          f"speed-up {ref / ours:.2f}x", flush=True)
    return out


def real_sweep(device: torch.device) -> float:
    """Wall time of the default sweep run for real with our trainer (no figures)."""
    from . import sweep

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = sweep.main([f"results_dir={tmp}", "analyze=false", f"device={device.type}"])
        wall = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"the default sweep failed (exit status {rc})")
    print(f"default sweep run for real with our trainer: {wall:.0f}s", flush=True)
    return wall


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


HEADER = (f"{'cell':<16}{'steps':>6}{'ours img/s':>12}{'ref img/s':>11}{'speed-up':>10}"
          f"{'GFLOP/step':>12}{'GFLOP/s':>9}{'MFU':>7}")


def _row(label: str, c: dict) -> str:
    cache = f" (cache: layers 1-{c['ours']['feature_cache_layers']})" if c["ours"]["feature_cache_layers"] else ""
    return (f"{label:<16}{c['steps']:>6}{c['ours_images_per_s']:>12.0f}{c['reference_images_per_s']:>11.0f}"
            f"{c['speedup_cell']:>9.2f}x{c['flops_per_step'] / 1e9:>12.3f}{c['achieved_flops'] / 1e9:>9.1f}"
            f"{c['mfu']:>7.1%}{cache}")


def print_table(result: dict) -> None:
    print(f"\n== {result['device_name']}: dense {result['peak']['dtype']} matmul peak "
          f"{result['peak']['flops'] / 1e9:.1f} GFLOP/s; load {result['load_before']} -> {result['load_after']}")
    if result["load_before"] and result["load_before"][0] > 0.5 * (os.cpu_count() or 1):
        print("note: other processes were using the CPU when the run started (load average above); "
              "absolute numbers suffer, the side-by-side ratios less so")
    print("speed-up: the whole cell (training + per-epoch evaluation + caching) against the reference loop")
    for net, entry in result["networks"].items():
        print(f"\n{net} network, {entry['epochs']} epoch(s) per cell")
        print(HEADER)
        for label, c in entry["cells"].items():
            print(_row(label, c))
        s = entry.get("sweep")
        if s:
            print(f"default sweep ({s['cells']} networks x {s['epochs']} epochs): ours {s['ours_estimated_s']:.0f}s "
                  f"estimated" + (f", {s['ours_measured_s']:.0f}s measured" if "ours_measured_s" in s else "")
                  + f"; reference loop {s['reference_estimated_s']:.0f}s estimated; "
                  f"speed-up {s['speedup_estimated']:.2f}x")
            print("  per frozen depth (s): " + ", ".join(
                f"n={f}: {v['ours_s']:.1f} vs {v['reference_s']:.1f}" for f, v in s["per_frozen_layers"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one epoch per cell, smaller CIFAR-sized data, no real sweep")
    p.add_argument("--steps", type=int, default=None, help="training steps per cell (rounded to whole epochs)")
    p.add_argument("--repeat", type=int, default=None, help="runs per side and cell; the fastest counts (default 2, quick 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--no-sweep", action="store_true", help="do not time the real default sweep")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/bench_<device>.json)")
    args = p.parse_args(argv)
    result = run(args)
    print_table(result)
    out = Path(args.out) if args.out else Path("results") / "bench" / f"bench_{resolve_device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from .store import atomic_write_json

    atomic_write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

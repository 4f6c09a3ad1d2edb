"""Benchmark: how fast transferlab trains a sweep, measured side by side with the loops a user
would write instead. Every number is a run; nothing is estimated.

    python -m transferlab.bench                 # cells + the whole default sweep both ways (~15 min on 2 CPU cores)
    python -m transferlab.bench --quick         # cells only, one epoch each (~2 min)
    python -m transferlab.bench --repeat 3 --out bench.json

Cells: a base, a frozen cell (n=5) and a fine-tuned cell (n=5+) of the default network (16x16
synthetic data, no augmentation) and of the CIFAR-sized one (32x32, the CIFAR recipe's crop and
flip), each trained for the same steps by
- ours: ``train.train`` as a sweep runs it (data on the device, batched augmentation,
  channels_last, the frozen-prefix feature cache, fused SGD), here on all CPU threads;
- plain: the loop a user with in-memory tensors writes: ``DataLoader(TensorDataset(x, y),
  shuffle=True)``, the same network module, ``torch.optim.SGD`` with the same settings and
  schedule, frozen layers with ``requires_grad=False``, the same validation passes;
- plain, torch.nn layers: the same loop and a network built as a user builds it
  (``nn.LocalResponseNorm``, ``nn.Dropout``, ReLU before the max-pool, as Caffe has it);
- PIL: torchvision's recipe: PIL images through ``DataLoader(num_workers=2)`` and transforms.
Runs alternate and the fastest of ``--repeat`` counts, so a busy machine hurts every side alike.
Per cell: training images/s, the speed-up on the whole cell, the FLOPs of one training step as
our trainer runs it (``FlopCounterMode``), the FLOP/s achieved and its ratio to the device's
dense matmul peak measured in the same run (MFU).

The whole default sweep (2 bases + 4 treatments x 7 layers): ours is ``transferlab.sweep`` run
for real (its networks side by side, ``launcher.workers``); the plain loop trains the same plan
(same networks, epochs, evaluations, bases first and copied from) one network after another on
all threads. The ratio of the two wall times is the speed-up the README quotes.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import compose
from .data import ImageSet, load_dataset, make_split, task_view
from .executors import cpu_cores
from .models import build_model, copy_layers, freeze_layers
from .models.dropout import Dropout
from .models.lrn import LocalResponseNorm
from .store import timestamp
from .batches import make_batches
from .train import _autocast, device_name, lr_at, resolve_device, train

NETWORKS = {
    "default": [],
    "cifar": ["model=caffenet_cifar", "data.image_size=32", "data.augment.crop_padding=4",
              "data.augment.flip=true"],
}
CELLS = {"base": (0, False), "frozen n=5": (5, False), "fine-tuned n=5": (5, True)}
REFERENCES = ("plain", "plain, torch.nn layers", "PIL")




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


# --- the loops a user would write -----------------------------------------------------------

def torch_nn_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` built from torch.nn's own layers, in Caffe's order: ReLU before the
    max-pool, ``nn.LocalResponseNorm``, ``nn.Dropout``. Same weights, same function."""
    m = copy.deepcopy(model)
    for i, block in enumerate(m.layers):
        mods = list(block)
        pool = [j for j, x in enumerate(mods) if isinstance(x, nn.MaxPool2d)]
        relu = [j for j, x in enumerate(mods) if isinstance(x, nn.ReLU)]
        if pool and relu and relu[0] == pool[0] + 1:
            mods[pool[0]], mods[relu[0]] = mods[relu[0]], mods[pool[0]]
        mods = [nn.LocalResponseNorm(x.size, x.alpha, x.beta, x.k) if isinstance(x, LocalResponseNorm)
                else nn.Dropout(x.p) if isinstance(x, Dropout) else x for x in mods]
        m.layers[i] = nn.Sequential(*mods)
    return m


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


def _tensor_loaders(task, cfg, mean, std, pin: bool):
    from torch.utils.data import DataLoader, TensorDataset

    def normalised(s):
        m, sd = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        return (s.x.float() / 255 - m) / sd

    B = int(cfg.train.batch_size)
    train = DataLoader(TensorDataset(normalised(task.train), task.train.y), batch_size=B, shuffle=True,
                       drop_last=True, pin_memory=pin)
    val = DataLoader(TensorDataset(normalised(task.val), task.val.y), batch_size=1000, pin_memory=pin)
    return train, val


def _pil_loaders(task, cfg, mean, std, pin: bool):
    from torch.utils.data import DataLoader

    B = int(cfg.train.batch_size)
    train = DataLoader(PILImages(task.train, reference_transforms(cfg, mean, std, True)), batch_size=B,
                       shuffle=True, num_workers=2, drop_last=True, pin_memory=pin)
    val = DataLoader(PILImages(task.val, reference_transforms(cfg, mean, std, False)), batch_size=1000,
                     num_workers=2, pin_memory=pin)
    return train, val


def reference_cell(model, task, cfg, mean, std, device: torch.device, epochs: int, kind: str = "plain") -> dict:
    """Train ``model`` (frozen layers have requires_grad=False) with a plain loop: the network,
    optimiser, schedule, label smoothing, gradient clipping and evaluations of ``cfg.train``;
    data from in-memory tensors (plain) or PIL images (PIL)."""
    from .train import eval_steps

    t = cfg.train
    pin = device.type == "cuda"
    train_loader, val_loader = (_pil_loaders if kind == "PIL" else _tensor_loaders)(task, cfg, mean, std, pin)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                          nesterov=bool(t.nesterov) and t.momentum > 0)
    autocast = lambda: _autocast(device, t.precision)[0]  # noqa: E731
    steps_per_epoch = len(train_loader)
    evals = set(eval_steps(steps_per_epoch, t.get("evals_per_epoch", 1)))
    step, train_time, t0, top1 = 0, 0.0, time.perf_counter(), 0.0
    for _ in range(epochs):
        model.train()
        t1 = time.perf_counter()
        for b, (x, y) in enumerate(train_loader, 1):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps_per_epoch * epochs, steps_per_epoch, t)
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            with autocast():
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            opt.step()
            step += 1
            if b in evals:
                _sync(device)
                train_time += time.perf_counter() - t1
                model.eval()
                correct = 0
                with torch.no_grad(), autocast():
                    for xv, yv in val_loader:
                        correct += (model(xv.to(device)).argmax(1) == yv.to(device)).sum().item()
                top1 = correct / len(task.val)
                model.train()
                t1 = time.perf_counter()
        _sync(device)
        train_time += time.perf_counter() - t1
    return {"wall": time.perf_counter() - t0, "step_time": train_time, "steps": step, "val_top1": top1}


# --- our trainer ------------------------------------------------------------------------------

def our_cell(model, frozen: int, task, cfg, mean, std, device: torch.device) -> dict:
    batches = make_batches(task, mean, std, device, cfg.train.batch_size, cfg.data.get("augment"))
    r = train(model, batches, cfg.train, frozen_layers=frozen, seed=0, log=lambda m: None, detect_collapse=False)
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
        # Ours on every thread too: a single cell compares like with like.
        self.cfg = compose(overrides + [f"device={device.type}", f"train.threads={cpu_cores()}"])
        self.device = device
        self.ds = load_dataset(self.cfg.data)
        split = make_split(self.cfg.split.name, self.ds.num_classes, 0, self.ds.class_groups())
        self.task = task_view(self.ds, "B", list(split.task("B")))
        # The weights frozen and fine-tuned cells copy (the cost does not depend on them; the
        # networks may die on these random features, so every side trains every step regardless).
        self.source = build_model(self.cfg.model, self.task.num_classes, generator=torch.Generator().manual_seed(1))

    def model(self, n: int, frozen: int):
        m = build_model(self.cfg.model, self.task.num_classes, generator=torch.Generator().manual_seed(2))
        copy_layers(m, self.source, n)
        freeze_layers(m, frozen)
        return m.to(self.device)

    def run(self, side: str, n: int, frozen: int) -> dict:
        model = self.model(n, frozen)
        if side == "ours":
            return our_cell(model, frozen, self.task, self.cfg, self.ds.mean, self.ds.std, self.device)
        if side == "plain, torch.nn layers":
            model = torch_nn_network(model)
        with torch_threads(cpu_cores()):
            return reference_cell(model, self.task, self.cfg, self.ds.mean, self.ds.std, self.device,
                                  int(self.cfg.train.epochs), kind="PIL" if side == "PIL" else "plain")

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
        """Ours and every reference, alternating; the fastest run of each counts."""
        runs = {side: [] for side in ("ours", *REFERENCES)}
        for _ in range(repeat):
            for side in runs:
                runs[side].append(self.run(side, n, frozen))
        best = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
        ours = best["ours"]
        B = int(self.cfg.train.batch_size)
        return {"n": n, "frozen_layers": frozen, "steps": ours["steps"], "batch_size": B, "runs": best,
                "images_per_s": {k: r["steps"] * B / r["step_time"] for k, r in best.items()},
                "speedup": {k: best[k]["wall"] / ours["wall"] for k in REFERENCES},
                "walls": {k: [r["wall"] for r in v] for k, v in runs.items()}}


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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

    if not quick and not args.no_sweep:
        result["sweep"] = sweeps_side_by_side(device)
    result["load_after"] = _load()
    return result


# --- the whole default sweep, both ways ---------------------------------------------------------

def our_sweep(device: torch.device) -> dict:
    """The default sweep run for real by ``transferlab.sweep`` (no figures): wall time and accuracies."""
    from . import analysis, sweep

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
    from .cells import plan
    from .runner import SweepContext, _seed_for, build_cell_model
    from .store import SweepStore

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
    from .store import atomic_write_json

    atomic_write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

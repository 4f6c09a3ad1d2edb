"""Sweep folders in the real on-disk format (record.json per cell, no training) for fast
analysis tests: cells named by transferlab.cells.Cell, records shaped as runner.run_cell writes them."""
from __future__ import annotations

from pathlib import Path

from transferlab.cells import Cell
from transferlab.store import SweepStore, atomic_write_json

FT = ("selffer", "selffer_ft", "transfer", "transfer_ft")


def write_record(root: Path, cell: Cell, history: list[float], num_layers: int = 4,
                 target_classes: int = 5, status: str = "done", val_images: int | None = None) -> None:
    """One record; ``history`` is the val_top1 of every evaluation, the last one final."""
    hist = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": 1.0, "val_top1": a}
            for i, a in enumerate(history)]
    rec = {"status": status, **cell.as_dict(), "num_layers": num_layers, "target_classes": target_classes,
           "metrics": dict(hist[-1], epoch=len(hist)), "history": hist, "device": "cpu", "val_images": val_images,
           "wall_time": 0.1, "train_time": 0.1, "images_per_s": 1000.0}
    atomic_write_json(SweepStore(root).record_path(cell.key), rec)


def accuracy(cell: Cell) -> float:
    """A plausible, deterministic pattern: co-adaptation dips mid-network, transfer falls with n,
    fine-tuned transfer beats the base, random weights collapse; dissimilar transfer falls faster."""
    base = 0.60 + 0.01 * cell.split_seed + 0.005 * cell.seed + (0.02 if cell.target == "B" else 0.0)
    n, t = cell.n, cell.treatment
    drop = {"base": 0.0, "selffer": 0.02 * (n == 2), "selffer_ft": -0.002 * n, "transfer": 0.02 * (n == 2) + 0.03 * n,
            "transfer_ft": -0.01 - 0.002 * n, "random": 0.1 * n, "pretrained": 0.01 * n, "pretrained_ft": -0.015}[t]
    if cell.split == "dissimilar" and t == "transfer":
        drop *= 2
    return round(base - drop, 4)


def make_sweep(root: Path, split: str = "random", split_seeds=(0, 1), seeds=(0,), targets=("A", "B"),
               ns=(1, 2, 3), treatments=FT, num_layers: int = 4, epochs: int = 3) -> Path:
    """A finished sweep folder; every cell's history rises to ``accuracy(cell)`` at the end."""
    root = Path(root)
    for ss in split_seeds if split == "random" else (0,):
        for seed in seeds:
            for target in targets:
                cells = [Cell("base", target, 0, split, ss, seed)]
                cells += [Cell(t, target, n, split, ss, seed) for n in ns for t in treatments]
                for c in cells:
                    a = accuracy(c)
                    write_record(root, c, [a - 0.01 * (epochs - 1 - e) for e in range(epochs)], num_layers)
    return root

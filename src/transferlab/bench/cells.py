"""One network trained by ours and by every reference, alternating; FLOPs of a training step."""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from ..batches import make_batches
from ..config import compose, fit_to_data
from ..data import load_dataset, make_split, task_view
from ..executors import cpu_cores
from ..models import build_model, copy_layers, freeze_layers
from ..train import _autocast, train
from .reference import reference_cell, torch_nn_network

CELLS = {"base": (0, False), "frozen n=5": (5, False), "fine-tuned n=5": (5, True)}
REFERENCES = ("plain", "plain, torch.nn layers", "PIL")


def our_cell(model, frozen: int, task, cfg, mean, std, device: torch.device) -> dict:
    batches = make_batches(task, mean, std, device, cfg.train.batch_size, cfg.data.get("augment"))
    r = train(model, batches, cfg.train, frozen_layers=frozen, seed=0, log=lambda m: None, detect_collapse=False)
    steps = batches.steps_per_epoch * int(cfg.train.epochs)
    return {"wall": r["train_time"], "step_time": r["train_time"] - r["eval_time"] - r["setup_time"],
            "steps": steps, "setup_time": r["setup_time"], "eval_time": r["eval_time"],
            "feature_cache_layers": r["feature_cache_layers"], "fast_path": r["fast_path"],
            "val_top1": r["metrics"]["val_top1"], "train_loss": r["metrics"]["train_loss"],
            "feature_cache_check": r["feature_cache_check"]}


def step_flops(model, frozen: int, start: int, x: torch.Tensor, y: torch.Tensor, device, precision) -> int:
    """FLOPs of one training step as the trainer runs it (forward from layer start+1, backward
    through the layers that learn)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter, _autocast(device, precision)[0]:
        out = m(x, start=start, no_grad_prefix=frozen)
        F.cross_entropy(out.float(), y).backward()
    return counter.get_total_flops()


class Bench:
    def __init__(self, overrides: list[str], device: torch.device):
        # Ours on every thread too: a single cell compares like with like.
        self.cfg = compose(overrides + [f"device={device.type}", f"train.threads={cpu_cores()}"])
        self.device = device
        self.ds = load_dataset(self.cfg.data)
        fit_to_data(self.cfg, self.ds)
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

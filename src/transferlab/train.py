"""The trainer: one network on one task, on CUDA when there is one, else on the CPU.

Data that fits in memory is held once on the device as uint8; shuffling, normalisation,
random crops and flips are batched tensor ops there (no DataLoader workers). Frozen layers
are never given to the optimiser and run without an autograd graph.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .data import ImageSet, Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def augment(x: torch.Tensor, crop_padding: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched, on x's device."""
    B, _, H, W = x.shape
    if crop_padding:
        p = crop_padding
        xp = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (B,), generator=g, device=g.device).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (B,), generator=g, device=g.device).to(x.device)
        rows = (oy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, None, :]
        b = torch.arange(B, device=x.device)[:, None, None, None]
        c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[b, c, rows, cols]
    if flip:
        mask = (torch.rand(B, generator=g, device=g.device) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class TensorBatches:
    """Batches from images held once on the device as uint8: shuffling, normalisation, random
    crops and flips are batched tensor ops there, with no DataLoader worker processes.

    Other batch sources (e.g. a DataLoader over image files) offer the same three members:
    ``steps_per_epoch``, ``epoch(generator)`` and ``eval_batches()``, each yielding float
    images normalised on the device and int64 labels.
    """

    def __init__(self, train: ImageSet, val: ImageSet, mean, std, device: torch.device,
                 batch_size: int, crop_padding: int = 0, flip: bool = False):
        self.train, self.val = train, val
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=device).view(shape)
        self.std = torch.tensor(std, device=device).view(shape)
        self.device, self.batch_size = device, int(batch_size)
        self.crop_padding, self.flip = int(crop_padding), bool(flip)
        # Drop the last partial batch: every step sees the same batch size.
        self.steps_per_epoch = max(1, len(train) // self.batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255) - self.mean) / self.std

    def epoch(self, g: torch.Generator):
        B = self.batch_size
        perm = torch.randperm(len(self.train), generator=g, device=g.device).to(self.device)
        for b in range(self.steps_per_epoch):
            idx = perm[b * B:(b + 1) * B]
            x = self.train.x[idx]
            if self.crop_padding or self.flip:
                x = augment(x, self.crop_padding, self.flip, g)
            yield self.normalise(x), self.train.y[idx]

    def eval_batches(self, batch_size: int = 1000):
        for i in range(0, len(self.val), batch_size):
            yield self.normalise(self.val.x[i:i + batch_size]), self.val.y[i:i + batch_size]


_DEVICE_CACHE: dict = {}


def on_device(s: ImageSet, device: torch.device) -> ImageSet:
    """``s`` moved to ``device`` once per process: every cell of a task shares the copy."""
    if s.x.device == device:
        return s
    key = (id(s), str(device))
    if key not in _DEVICE_CACHE:
        if len(_DEVICE_CACHE) >= 8:  # train and val of tasks A and B of a couple of splits
            _DEVICE_CACHE.pop(next(iter(_DEVICE_CACHE)))
        _DEVICE_CACHE[key] = (s, ImageSet(s.x.to(device), s.y.to(device)))
    return _DEVICE_CACHE[key][1]


def make_batches(task: Task, mean, std, device: torch.device, batch_size: int, augment_cfg=None):
    """The batch source for a task's data."""
    crop = int(augment_cfg.crop_padding) if augment_cfg is not None else 0
    flip = bool(augment_cfg.flip) if augment_cfg is not None else False
    return TensorBatches(on_device(task.train, device), on_device(task.val, device), mean, std,
                         device, batch_size, crop, flip)


def param_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """Trainable parameters only (frozen ones would still be moved by weight decay)."""
    weights, biases = [], []
    for p in model.parameters():
        if p.requires_grad:
            (biases if p.ndim == 1 else weights).append(p)
    groups = [{"params": weights, "weight_decay": cfg.weight_decay, "lr_mult": 1.0}]
    if biases:
        groups.append({"params": biases, "lr_mult": cfg.bias_lr_mult,
                       "weight_decay": cfg.weight_decay if cfg.bias_weight_decay else 0.0})
    return [g for g in groups if g["params"]]


def lr_at(step: int, total: int, steps_per_epoch: int, cfg) -> float:
    """Learning rate at an optimiser step: linear warm-up from lr/10, then the schedule."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (0.1 + 0.9 * step / warm)
    if cfg.schedule == "cosine":
        t = (step - warm) / max(1, total - warm)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step" and cfg.step_every_epochs:
        return cfg.lr * cfg.step_gamma ** (step // int(cfg.step_every_epochs * steps_per_epoch))
    return cfg.lr


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), precision


@torch.no_grad()
def evaluate(model, batches, device: torch.device, precision: str = "fp32") -> dict:
    """Loss, top-1 and (with more than 5 classes) top-5 accuracy on the validation view."""
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in batches.eval_batches():
        ctx, _ = _autocast(device, precision)
        with ctx:
            out = model(x).float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        k = min(5, out.shape[1])
        pred = out.topk(k, dim=1).indices
        top1 += (pred[:, 0] == y).sum().item()
        top5 += (pred == y[:, None]).any(dim=1).sum().item()
        n += len(y)
    metrics = {"val_loss": loss_sum / n, "val_top1": top1 / n}
    if out.shape[1] > 5:
        metrics["val_top5"] = top5 / n
    return metrics


def train(model, batches, cfg, *, frozen_layers: int, seed: int,
          log: Callable[[str], None] = print) -> dict:
    """Train ``model`` in place; returns final metrics and the per-epoch history."""
    device = batches.device
    torch.manual_seed(seed)  # dropout masks
    g = torch.Generator(device=device).manual_seed(seed)
    if cfg.channels_last is True or (cfg.channels_last == "auto" and device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters: every layer is frozen")
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov) and cfg.momentum > 0)
    fwd = torch.compile(model) if cfg.compile else model
    B, steps_per_epoch = batches.batch_size, batches.steps_per_epoch
    total = steps_per_epoch * int(cfg.epochs)
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(1, int(cfg.epochs) + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in batches.epoch(g):
            lr = lr_at(step, total, steps_per_epoch, cfg)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
            ctx, _ = _autocast(device, cfg.precision)
            with ctx:
                out = fwd(x, no_grad_prefix=frozen_layers)
                loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for gr in groups for p in gr["params"]], cfg.grad_clip)
            opt.step()
            step += 1
            loss_sum += loss.detach()
            correct += (out.argmax(1) == y).sum()
        train_loss = loss_sum.item() / steps_per_epoch
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch}")
        metrics = evaluate(model, batches, device, cfg.precision)
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_loss": train_loss,
                        "train_top1": correct.item() / (steps_per_epoch * B),
                        "lr": lr, "time": elapsed, **metrics})
        eta = elapsed / epoch * (int(cfg.epochs) - epoch)
        log(f"epoch {epoch}/{cfg.epochs} loss {train_loss:.3f} val top1 {metrics['val_top1']:.1%}"
            f" ({elapsed:.1f}s, cell ETA {eta:.0f}s)")
    return {"metrics": dict(history[-1]), "history": history, "train_time": time.perf_counter() - t0,
            "images_per_s": total * B / max(1e-9, time.perf_counter() - t0),
            "precision": _autocast(device, cfg.precision)[1]}

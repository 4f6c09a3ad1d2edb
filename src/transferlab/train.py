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

from .data import FileSet, ImageSet, Task
from .models.dropout import Dropout


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or a base network's training collapsed to chance."""


DROPOUT_SEED = 0x5EED  # offset of a network's dropout stream from its batch stream


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def augment(x: torch.Tensor, crop_padding: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched, on x's device: both are one
    gather from the padded images (each output pixel's source row and column), which is 20x
    faster on a CPU than advanced indexing followed by ``where(flip(x), x)``."""
    B, C, H, W = x.shape
    p = int(crop_padding)
    if p:
        oy = torch.randint(0, 2 * p + 1, (B,), generator=g, device=g.device).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (B,), generator=g, device=g.device).to(x.device)
    else:
        oy = ox = torch.zeros(B, dtype=torch.long, device=x.device)
    cols = torch.arange(W, device=x.device).expand(B, W)
    if flip:
        mask = (torch.rand(B, generator=g, device=g.device) < 0.5).to(x.device)
        cols = torch.where(mask[:, None], W - 1 - cols, cols)
    elif not p:
        return x
    rows = oy[:, None] + torch.arange(H, device=x.device)
    src = (rows[:, :, None] * (W + 2 * p) + (ox[:, None] + cols)[:, None, :]).view(B, 1, H * W)
    xp = F.pad(x, (p, p, p, p)) if p else x
    return xp.reshape(B, C, -1).gather(2, src.expand(B, C, H * W)).view(B, C, H, W)


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


class _Decoded(torch.utils.data.Dataset):
    """Image i of a FileSet as uint8 [H, W, 3] and its label, in the original (Caffe) recipe:
    resized to resize x resize (aspect ratio not kept), then a random crop x crop and a random
    mirror (training; drawn from (epoch seed, i), so no worker count or order changes them) or
    the centre crop (validation, ``seed=None``)."""

    def __init__(self, s: FileSet, resize: int, crop: int, flip: bool, seed: int | None):
        if crop > resize:
            raise ValueError(f"data.augment.crop={crop} is larger than data.augment.resize={resize}")
        self.s, self.resize, self.crop, self.flip, self.seed = s, resize, crop, flip, seed

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        with Image.open(self.s.path(i)) as im:
            a = np.asarray(im.convert("RGB").resize((self.resize, self.resize), Image.BILINEAR))
        r, c = self.resize, self.crop
        if self.seed is None:
            oy = ox = (r - c) // 2
            mirror = False
        else:
            rng = np.random.default_rng((self.seed, i))
            oy, ox = (int(v) for v in rng.integers(0, r - c + 1, 2))
            mirror = self.flip and rng.random() < 0.5
        a = a[oy:oy + c, ox:ox + c]
        return torch.from_numpy((a[:, ::-1] if mirror else a).copy()), int(self.s.y[i])


class LoaderBatches:
    """Batches of image files decoded by DataLoader worker processes (datasets too big for
    memory, e.g. ImageNet): uint8 images in pinned host memory, copied to the device without
    blocking and normalised there. Same interface as TensorBatches."""

    def __init__(self, train: FileSet, val: FileSet, mean, std, device: torch.device,
                 batch_size: int, resize: int, crop: int, flip: bool):
        self.train, self.val = train, val
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.device, self.batch_size = device, int(batch_size)
        self.resize, self.crop, self.flip = int(resize), int(crop), bool(flip)
        self.steps_per_epoch = max(1, len(train) // self.batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        # [B, H, W, 3] -> [B, 3, H, W] is a channels_last view: no copy.
        return (x.permute(0, 3, 1, 2).float().div_(255) - self.mean) / self.std

    def _loader(self, s: FileSet, batch_size: int, seed: int | None):
        from torch.utils.data import DataLoader

        workers = int(s.num_workers)
        return DataLoader(
            _Decoded(s, self.resize, self.crop, self.flip, seed), batch_size=batch_size,
            shuffle=seed is not None, drop_last=seed is not None and len(s) >= batch_size,
            generator=torch.Generator().manual_seed(seed) if seed is not None else None,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None)

    def _to_device(self, loader):
        for x, y in loader:
            yield (self.normalise(x.to(self.device, non_blocking=True)),
                   y.to(self.device, non_blocking=True))

    def epoch(self, g: torch.Generator):
        seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
        yield from self._to_device(self._loader(self.train, self.batch_size, seed))

    def eval_batches(self, batch_size: int | None = None):
        yield from self._to_device(self._loader(self.val, batch_size or 2 * self.batch_size, None))


def make_batches(task: Task, mean, std, device: torch.device, batch_size: int, augment_cfg=None):
    """The batch source for a task's data: device-resident tensors for images in memory, a
    DataLoader over the files for images on disk."""
    if isinstance(task.train, FileSet):
        return LoaderBatches(task.train, task.val, mean, std, device, batch_size,
                             augment_cfg.resize, augment_cfg.crop, augment_cfg.flip)
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


def resolve_precision(device: torch.device, precision: str) -> str:
    """train.precision on this device: auto is bf16 on CUDA and fp32 on a CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def _autocast(device: torch.device, precision: str):
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), precision


def fast_path(cfg, device: torch.device) -> dict:
    """Resolve the speed switches: channels_last (auto: on, also measured faster on a CPU with
    oneDNN), cudnn.benchmark (auto: on CUDA), torch.compile (off unless asked for)."""
    def switch(key, auto):
        value = cfg.get(key, "auto")
        if value not in ("auto", True, False):
            raise ValueError(f"train.{key}={value!r} is not valid; allowed: auto, true, false")
        return auto if value == "auto" else value

    return {"channels_last": switch("channels_last", device.type in ("cpu", "cuda")),
            "cudnn_benchmark": switch("cudnn_benchmark", device.type == "cuda"),
            "compile": switch("compile", False)}


def compiled(model, backend: str = "inductor"):
    """``torch.compile(model)``, compiled once per shape. Dynamo keys its graphs on
    ``CaffeNet.forward``'s code with parameters as graph inputs, so every later cell with the
    same shapes, frozen prefix and entry layer reuses a graph; a sweep needs up to ~2L graphs."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(model, backend=backend)


@torch.no_grad()
def evaluate(model, batches, device: torch.device, precision: str = "fp32") -> dict:
    """Loss, top-1 and (with more than 5 classes) top-5 accuracy on the validation view."""
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in batches.eval_batches():
        ctx, _ = _autocast(device, precision)
        with ctx:
            out = model(x, **getattr(batches, "model_kwargs", {})).float()
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


class Interrupted(BaseException):
    """Training was asked to stop (Ctrl-C in a sweep); the last epoch's checkpoint stays."""


def set_threads(cfg, device: torch.device) -> None:
    """CPU threads per network (``train.threads``): CPU arithmetic depends on the thread count, so
    it is part of the recipe; networks run side by side (launcher.workers) to use the cores."""
    threads = int(cfg.get("threads", 0) or 0)
    if device.type == "cpu" and threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> list[int]:
    """The steps of an epoch (1-based) after which the network is evaluated, evenly spaced."""
    k = max(1, min(int(evals_per_epoch), steps_per_epoch))
    return sorted({round(i * steps_per_epoch / k) for i in range(1, k + 1)})


def train(model, batches, cfg, *, frozen_layers: int, seed: int,
          log: Callable[[str], None] = print, state: dict | None = None,
          on_epoch_end: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, detect_collapse: bool = True) -> dict:
    """Train ``model`` in place; returns final metrics, the history of evaluations
    (``train.evals_per_epoch`` per epoch), whether the validation curve reached a plateau, and
    ``collapsed``: why training stopped early because the network died (convergence.collapse),
    else None.

    ``on_epoch_end(state)`` is called after every epoch with the full training state (weights,
    optimiser, step, history, random generators; tensors and plain values only, so it loads
    with ``weights_only=True``). Passing such a ``state`` back resumes after that epoch, and
    the run ends exactly as one that was never interrupted. ``should_stop()`` is asked after
    every step; when it says so, training raises ``Interrupted``. ``detect_collapse=False``
    trains every step even when the network has died (the benchmark times whole cells).
    """
    from .convergence import collapse, of_history

    device = batches.device
    set_threads(cfg, device)
    g = torch.Generator(device=device).manual_seed(seed)                   # batches, augmentation
    g_drop = torch.Generator(device=device).manual_seed(seed + DROPOUT_SEED)  # this network's dropout masks
    for m in model.modules():
        if isinstance(m, Dropout):
            m.generator = g_drop
    fast = fast_path(cfg, device)
    if fast["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = fast["cudnn_benchmark"]
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters: every layer is frozen")
    # The fused kernel: one op per step instead of ~4 per tensor (5x faster on a CPU).
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov) and cfg.momentum > 0,
                          fused=device.type in ("cpu", "cuda"))
    fwd = compiled(model) if fast["compile"] else model
    B, steps_per_epoch = batches.batch_size, batches.steps_per_epoch
    total = steps_per_epoch * int(cfg.epochs)
    evaluate_after = eval_steps(steps_per_epoch, cfg.get("evals_per_epoch", 1))
    if len(evaluate_after) < int(cfg.get("evals_per_epoch", 1)):
        log(f"train.evals_per_epoch={cfg.evals_per_epoch} is more than the {steps_per_epoch} steps of an "
            f"epoch: evaluating after every step")
    history, step, t0, eval_time, done_epochs = [], 0, time.perf_counter(), 0.0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, step, done_epochs = list(state["history"]), int(state["step"]), int(state["epoch"])
        t0 -= history[-1]["time"] if history else 0.0
    from .features import feature_batches  # imports this module

    batches = feature_batches(model, batches, frozen_layers, cfg.get("feature_cache", "auto"),
                              autocast=lambda: _autocast(device, cfg.precision)[0], log=log,
                              precision=resolve_precision(device, cfg.precision))
    entry = getattr(batches, "model_kwargs", {})  # cached features enter above layer 1
    setup_time = time.perf_counter() - t0
    if state is not None:  # after the feature cache: the generators as they were at the epoch's end
        g.set_state(state["rng"]["batches"])
        g_drop.set_state(state["rng"]["dropout"])
    collapsed = None
    for epoch in range(done_epochs + 1, int(cfg.epochs) + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        since = 0  # steps since the last evaluation
        for b, (x, y) in enumerate(batches.epoch(g), 1):
            lr = lr_at(step, total, steps_per_epoch, cfg)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
            ctx, _ = _autocast(device, cfg.precision)
            with ctx:
                out = fwd(x, no_grad_prefix=frozen_layers, **entry)
                loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for gr in groups for p in gr["params"]], cfg.grad_clip)
            opt.step()
            step, since = step + 1, since + 1
            loss_sum += loss.detach()
            correct += (out.argmax(1) == y).sum()
            if should_stop is not None and should_stop():
                raise Interrupted(f"stopped in epoch {epoch}, step {step}")
            if b not in evaluate_after:
                continue
            train_loss = loss_sum.item() / since
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch} (step {step})")
            t_eval = time.perf_counter()
            metrics = evaluate(model, batches, device, cfg.precision)
            eval_time += time.perf_counter() - t_eval
            model.train()
            history.append({"epoch": round(step / steps_per_epoch, 4), "step": step, "train_loss": train_loss,
                            "train_top1": correct.item() / (since * B), "lr": lr,
                            "time": time.perf_counter() - t0, **metrics})
            if detect_collapse and (collapsed := collapse(history, out.shape[1])) is not None:
                collapsed += "; lower train.lr" + ("" if cfg.grad_clip else " or set train.grad_clip")
                log(collapsed)
                break
            loss_sum.zero_()
            correct.zero_()
            since = 0
        if collapsed:  # training on would not bring it back: stop here
            break
        elapsed = time.perf_counter() - t0
        eta = elapsed / epoch * (int(cfg.epochs) - epoch)
        log(f"epoch {epoch}/{cfg.epochs} loss {history[-1]['train_loss']:.3f} val top1 "
            f"{history[-1]['val_top1']:.1%} ({elapsed:.1f}s, cell ETA {eta:.0f}s)")
        if on_epoch_end is not None:
            on_epoch_end({"epoch": epoch, "step": step, "history": history, "model": model.state_dict(),
                          "optimizer": opt.state_dict(),
                          "rng": {"batches": g.get_state(), "dropout": g_drop.get_state()}})
    wall = time.perf_counter() - t0
    return {"metrics": dict(history[-1]), "history": history, "convergence": of_history(history),
            "collapsed": collapsed,
            "train_time": wall, "images_per_s": step * B / max(1e-9, wall),
            "precision": _autocast(device, cfg.precision)[1], "setup_time": setup_time,
            "eval_time": eval_time, "feature_cache_layers": entry.get("start", 0),
            "feature_cache_check": getattr(batches, "check", None), "fast_path": fast,
            "threads": torch.get_num_threads() if device.type == "cpu" else None}

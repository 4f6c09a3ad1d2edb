"""The trainer: one network on one task, on CUDA when there is one, else on the CPU.

Batches come from a batches.BatchSource (images held once on the device, or decoded from files);
frozen layers are never given to the optimiser and run without an autograd graph, and a frozen
cell's prefix may be computed once (features.feature_batches).
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .batches import (BatchSource, LoaderBatches, TensorBatches, _Decoded, augment,  # noqa: F401 (re-exported)
                      make_batches, on_device)
from .features import feature_batches
from .schema import check_group
from .models.dropout import Dropout


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or a base network's training collapsed to chance."""


DROPOUT_SEED = 0x5EED  # offset of a network's dropout stream from its batch stream


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and the cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"cpu ({platform.processor() or platform.machine()}, {cores} cores)"


def unit_lr_mults(num_layers: int, cfg, *, frozen_layers: int = 0, transferred: int = 0) -> list[float]:
    """The learning-rate multiplier of units 1..L: 0 for the ``frozen_layers`` frozen ones; copied
    unit i of the ``transferred`` ones a fine-tuned cell copied gets train.transfer_lr_mult x
    train.layer_decay ** (transferred - i); every other unit 1."""
    mult, decay = float(cfg.get("transfer_lr_mult", 1.0)), float(cfg.get("layer_decay", 1.0))
    return [0.0 if i <= frozen_layers else mult * decay ** (transferred - i) if i <= transferred else 1.0
            for i in range(1, num_layers + 1)]


def param_groups(model: torch.nn.Module, cfg, unit_mults: list[float] | None = None) -> list[dict]:
    """Trainable parameters only (frozen ones would still be moved by weight decay): weights, then
    biases (lr x train.bias_lr_mult), for each multiplier of ``unit_mults`` (unit_lr_mults; unit i's
    at [i - 1]) in the order the units come. With every multiplier 1 that is two groups, as
    before the per-unit multipliers; the order depends only on the model and the config, so a
    checkpoint's optimiser state loads into a resumed run."""
    mult_of = {id(p): m for m, layer in zip(unit_mults or [], model.layers) for p in layer.parameters()}
    by_mult: dict[float, tuple[list, list]] = {}
    for p in model.parameters():
        if p.requires_grad:
            m = mult_of.get(id(p), 1.0)
            if m == 0:
                raise ValueError("a unit with learning-rate multiplier 0 (train.transfer_lr_mult=0) must be "
                                 "frozen (models.freeze_layers, frozen_layers=)")
            weights, biases = by_mult.setdefault(m, ([], []))
            (biases if p.ndim == 1 else weights).append(p)
    groups = []
    for m, (weights, biases) in by_mult.items():
        groups.append({"params": weights, "weight_decay": cfg.weight_decay, "lr_mult": m})
        if biases:
            groups.append({"params": biases, "lr_mult": m * cfg.bias_lr_mult,
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


def resolved_arithmetic(cfg, device) -> dict:
    """What the config leaves to the machine but the results depend on: the kind of device, the
    precision (auto: bf16 on CUDA, fp32 on a CPU) and, on a CPU, the threads per network."""
    return {"device": device.type, "precision": resolve_precision(device, cfg.train.precision),
            "threads": int(cfg.train.threads) if device.type == "cpu" else None}


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
        return auto if value == "auto" else value

    return {"channels_last": switch("channels_last", device.type in ("cpu", "cuda")),
            "cudnn_benchmark": switch("cudnn_benchmark", device.type == "cuda"),
            "compile": switch("compile", False)}


def compiled(model, backend: str = "inductor"):
    """``torch.compile(model)``, compiled once per shape. Dynamo keys its graphs on
    ``UnitNet.forward``'s code with parameters as graph inputs, so every later cell with the
    same shapes, frozen prefix and entry layer reuses a graph; a sweep needs up to ~2L graphs."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(model, backend=backend)


@torch.no_grad()
def evaluate(model, batches: BatchSource, device: torch.device, precision: str = "fp32") -> dict:
    """Loss, top-1 and (with more than 5 classes) top-5 accuracy on the validation view."""
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in batches.eval_batches():
        ctx, _ = _autocast(device, precision)
        with ctx:
            out = model(x, **batches.model_kwargs).float()
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


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(groups: list[dict], cfg, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser of ``train.optimizer`` over ``groups`` (param_groups): "sgd" with momentum
    and nesterov, or "adamw" (weight_decay as decoupled decay, torch's default betas and eps).
    Both use the fused kernel where the device has one: one op per step instead of ~4 per tensor
    (5x faster on a CPU)."""
    name = cfg.get("optimizer", "sgd")
    # Not with fp16's gradient scaler on a CPU: fused SGD there turned the weights to NaN within
    # 6 steps of a scaled tiny network, where the foreach kernel trains (tests/test_precision.py).
    fp16 = resolve_precision(device, cfg.get("precision", "auto")) == "fp16"
    fused = device.type == "cuda" or (device.type == "cpu" and not fp16)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=bool(cfg.nesterov) and cfg.momentum > 0, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    raise ValueError(f"train.optimizer={name!r} is not valid; allowed: {', '.join(OPTIMIZERS)}")


def restore(state: dict, model, opt, scaler=None) -> tuple[list, int, int]:
    """Load a saved training state (on_epoch_end's) into ``model``, ``opt`` and the fp16 gradient
    ``scaler``; returns the history, the optimiser step and the epochs done."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return list(state["history"]), int(state["step"]), int(state["epoch"])


def train(model, batches: BatchSource, cfg, *, frozen_layers: int, seed: int, transferred: int = 0,
          log: Callable[[str], None] = print, state: dict | None = None,
          on_epoch_end: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, detect_collapse: bool = True,
          progress: Callable[..., object] | None = None) -> dict:
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
    ``transferred``: how many leading units a fine-tuned cell copied (train.transfer_lr_mult and
    train.layer_decay set their learning rates; unit_lr_mults); 0 for a base or a frozen cell.
    ``progress(epoch, epochs, steps, images_per_step)``: an object told of every step
    (log.EpochProgress: a bar on a terminal, a line at least every 30 s in logs).
    """
    from .convergence import collapse, of_history

    # Setup: threads, random streams, speed switches, optimiser, schedule, resumed state.
    check_group("train", cfg)  # a recipe handed in directly gets the config's checks too
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
    unit_mults = unit_lr_mults(len(model.layers), cfg, frozen_layers=frozen_layers, transferred=transferred)
    groups = param_groups(model, cfg, unit_mults)
    if not groups:
        raise ValueError("no trainable parameters: every layer is frozen")
    opt = make_optimizer(groups, cfg, device)
    # fp16's 5-bit exponent flushes small gradients to zero: scale the loss up, unscale before the
    # clip and the step, skip steps whose gradients overflowed. Disabled (a no-op) for fp32 and bf16.
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(device, cfg.precision) == "fp16")
    fwd = compiled(model) if fast["compile"] else model
    B, steps_per_epoch = batches.batch_size, batches.steps_per_epoch
    total = steps_per_epoch * int(cfg.epochs)
    evaluate_after = eval_steps(steps_per_epoch, cfg.get("evals_per_epoch", 1))
    if len(evaluate_after) < int(cfg.get("evals_per_epoch", 1)):
        log(f"train.evals_per_epoch={cfg.evals_per_epoch} is more than the {steps_per_epoch} steps of an "
            f"epoch: evaluating after every step")
    history, step, t0, eval_time, done_epochs = [], 0, time.perf_counter(), 0.0, 0
    if state is not None:
        history, step, done_epochs = restore(state, model, opt, scaler)
        t0 -= history[-1]["time"] if history else 0.0
    batches = feature_batches(model, batches, frozen_layers, cfg.get("feature_cache", "auto"),
                              autocast=lambda: _autocast(device, cfg.precision)[0], log=log,
                              precision=resolve_precision(device, cfg.precision))
    entry = batches.model_kwargs  # cached features enter above layer 1
    setup_time = time.perf_counter() - t0
    if state is not None:  # after the feature cache: the generators as they were at the epoch's end
        g.set_state(state["rng"]["batches"])
        g_drop.set_state(state["rng"]["dropout"])

    # The loop: epochs of steps, evaluated evenly within each epoch.
    collapsed = None
    for epoch in range(done_epochs + 1, int(cfg.epochs) + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        since = 0  # steps since the last evaluation
        bar = progress(epoch, int(cfg.epochs), steps_per_epoch, B) if progress is not None else None
        try:
            for b, (x, y) in enumerate(batches.epoch(g), 1):
                lr = lr_at(step, total, steps_per_epoch, cfg)
                for group in opt.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                ctx, _ = _autocast(device, cfg.precision)
                with ctx:
                    out = fwd(x, no_grad_prefix=frozen_layers, **entry)
                    loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_([p for gr in groups for p in gr["params"]], cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                step, since = step + 1, since + 1
                loss_sum += loss.detach()
                correct += (out.argmax(1) == y).sum()
                if bar is not None:  # the loss is read (a device sync) only when shown
                    bar.step(b, lambda: loss_sum.item() / since)
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped in epoch {epoch}, step {step}")
                if b not in evaluate_after:
                    continue
                # Evaluate: the training loss since the last evaluation, then the validation view.
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
                if bar is not None:
                    bar.evaluated(history[-1])
                if detect_collapse and (collapsed := collapse(history, out.shape[1])) is not None:
                    collapsed += "; lower train.lr" + ("" if cfg.grad_clip else " or set train.grad_clip")
                    log(collapsed)
                    break
                loss_sum.zero_()
                correct.zero_()
                since = 0
        finally:  # Ctrl-C, a divergence: the bar goes too
            if bar is not None:
                bar.close()
        if collapsed:  # training on would not bring it back: stop here
            break
        elapsed = time.perf_counter() - t0
        eta = elapsed / epoch * (int(cfg.epochs) - epoch)
        log(f"epoch {epoch}/{cfg.epochs} loss {history[-1]['train_loss']:.3f} val top1 "
            f"{history[-1]['val_top1']:.1%} ({elapsed:.1f}s, cell ETA {eta:.0f}s)")
        if on_epoch_end is not None:
            on_epoch_end({"epoch": epoch, "step": step, "history": history, "model": model.state_dict(),
                          "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                          "rng": {"batches": g.get_state(), "dropout": g_drop.get_state()}})

    # The result: the last evaluation, the curve, and how the run went.
    wall = time.perf_counter() - t0
    return {"metrics": dict(history[-1]), "history": history, "convergence": of_history(history),
            "collapsed": collapsed,
            "train_time": wall, "images_per_s": step * B / max(1e-9, wall),
            "precision": _autocast(device, cfg.precision)[1], "setup_time": setup_time,
            "eval_time": eval_time, "feature_cache_layers": entry.get("start", 0),
            "feature_cache_check": getattr(batches, "check", None), "fast_path": fast,
            "threads": torch.get_num_threads() if device.type == "cpu" else None, "unit_lr_mult": unit_mults,
            "grad_scale": scaler.get_scale() if scaler.is_enabled() else None}

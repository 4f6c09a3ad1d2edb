"""A short measured burst of a network shape on this device, and a network's wall time from it
(see the package's doc)."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .work import Work

WARMUP_STEPS = 2        # untimed steps before a burst's timed ones (allocations, kernel choices)
TIMED_STEPS = 8         # timed training steps per burst, at most ...
TIMED_S = 0.25          # ... and no more once this long has been timed (one step at least)
EVAL_IMAGES = 512       # images of the timed evaluation chunk, at most
SLOW_STEP_S = 0.25      # a first step slower than this: no second warm-up, one evaluation batch


# ---------------------------------------------------------------------------------------------
# Bursts


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


@dataclass
class Burst:
    """Seconds per training step, per image of the cached prefix's forward pass, per validation
    image (evaluation from the cache's entry), per checkpoint, and for building the network."""
    step: float = 0.0
    prefix_image: float = 0.0
    eval_image: float = 0.0
    checkpoint: float = 0.0
    build: float = 0.0
    start: int = 0            # units the feature cache computes once (0: no cache)
    features: int = 0         # probes: pooled features of the unit
    took: float = 0.0


def _clock(device):
    """A burst on one CPU thread counts that thread's CPU time, not the wall: what a network
    computes, whatever else the machine runs meanwhile (its load is accounted for apart,
    contention()). On several threads (whose idle OpenMP workers spin, so CPU time overcounts)
    and on a GPU, the wall."""
    import torch

    return time.thread_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter


def _timed(fn, device, reps: int = 1) -> float:
    clock = _clock(device)
    _sync(device)
    t = clock()
    for _ in range(reps):
        fn()
    _sync(device)
    return (clock() - t) / reps


def _checkpoint_seconds(state: dict, folder: Path | None) -> float:
    """torch.save of ``state`` and an fsync'ed write of its bytes, as every epoch's checkpoint."""
    import io

    import torch

    t = time.perf_counter()
    buf = io.BytesIO()
    torch.save(state, buf)
    where = folder if folder is not None and folder.is_dir() else None
    fd, tmp = tempfile.mkstemp(dir=where, prefix=".eta.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
    finally:
        os.unlink(tmp)
    return time.perf_counter() - t


def burst(cfg, device, work: Work, cache: bool, folder: Path | None = None) -> Burst:
    """Time one network shape on ``device`` (see the package's doc), on train.threads CPU threads."""
    import torch

    from ..train import set_threads

    threads = torch.get_num_threads()
    try:
        set_threads(cfg.train, device)
        return _burst(cfg, device, work, cache, folder)
    finally:
        torch.set_num_threads(threads)


def _burst(cfg, device, work: Work, cache: bool, folder: Path | None) -> Burst:
    import torch
    import torch.nn.functional as F

    from ..features import _memory_budget, cache_depth
    from ..models import build_model, freeze_layers
    from ..train import _autocast, fast_path, make_optimizer, param_groups, resolve_precision, unit_lr_mults

    t0 = time.perf_counter()
    tc = cfg.train
    B, S = int(tc.batch_size), int(cfg.model.input_size)
    C = int(cfg.model.get("in_channels", 3) or 3)
    g = torch.Generator().manual_seed(0)
    out = Burst()
    clock = _clock(device)
    t = clock()
    model = build_model(cfg.model, work.task.classes, generator=g)
    freeze_layers(model, work.frozen)
    model = model.to(device)
    fast = fast_path(tc, device)
    if fast["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    out.build = clock() - t
    autocast = lambda: _autocast(device, tc.precision)[0]  # noqa: E731
    x = torch.randn(B, C, S, S, generator=g).to(device)
    y = torch.randint(work.task.classes, (B,), generator=g).to(device)

    if work.probe:  # the source's units 1..n in eval mode, pooled; the fit's arithmetic
        from ..probe import pool

        model.eval()
        n = min(B, int(cfg.probe.batch_size), EVAL_IMAGES)
        with torch.no_grad(), autocast():
            h = model.forward_prefix(x[:n], work.probe)
            out.features = pool(h, int(cfg.probe.max_features)).shape[1]

            def fwd():
                pool(model.forward_prefix(x[:n], work.probe), int(cfg.probe.max_features))
            out.prefix_image = _timed(fwd, device) / n
        out.took = time.perf_counter() - t0
        return out

    depth = cache_depth(model, work.frozen) if cache and work.frozen else 0
    if depth:
        with torch.no_grad(), autocast():
            h = model.forward_prefix(x, depth)
        need = (work.task.train + work.task.val) * h[0].numel() * h.element_size()
        if need > _memory_budget(device):
            depth = 0
    out.start = depth
    model.train()
    if depth:
        def prefix():
            with torch.no_grad(), autocast():
                model.forward_prefix(x, depth)
        prefix()
        out.prefix_image = _timed(prefix, device) / B
        with torch.no_grad(), autocast():
            inputs = model.forward_prefix(x, depth)
    else:
        inputs = x
    groups = param_groups(model, tc, unit_lr_mults(len(model.layers), tc, frozen_layers=work.frozen))
    opt = make_optimizer(groups, tc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(device, tc.precision) == "fp16")
    params = [p for gr in groups for p in gr["params"]]

    def step():  # train.train's step
        for group in opt.param_groups:
            group["lr"] = float(tc.lr) * group["lr_mult"]
        with autocast():
            o = model(inputs, start=depth, no_grad_prefix=work.frozen)
            loss = F.cross_entropy(o.float(), y, label_smoothing=float(tc.label_smoothing))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tc.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, float(tc.grad_clip))
        scaler.step(opt)
        scaler.update()
        loss.detach().item() if device.type != "cpu" else None

    slow = _timed(step, device) > SLOW_STEP_S  # a slow network: one warm-up step, one timed step, a batch evaluated
    for _ in range(WARMUP_STEPS - 1 if not slow else 0):
        step()
    times = []
    while not times or (len(times) < TIMED_STEPS and sum(times) < TIMED_S):
        times.append(_timed(step, device))
    out.step = statistics.median(times)

    model.eval()
    n = max(1, min(work.task.val, EVAL_IMAGES if not slow else B, 1000))
    xe = torch.randn(n, C, S, S, generator=g).to(device)
    with torch.no_grad(), autocast():
        he = model.forward_prefix(xe, depth) if depth else xe

        def evaluate():
            o = model(he, start=depth).float()
            o.topk(min(5, o.shape[1]), dim=1)
        if not slow:
            evaluate()
        out.eval_image = _timed(evaluate, device) / n
    model.train()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    out.checkpoint = _checkpoint_seconds(state, folder)
    out.took = time.perf_counter() - t0
    return out


def matmul_rate(device) -> float:
    """FLOP/s of a float32 matrix product on this device, for the probes' fits."""
    import torch

    n = 384
    a = torch.randn(n, n).to(device)
    a @ a
    s = _timed(lambda: a @ a, device, reps=4)
    return 2 * n ** 3 / max(s, 1e-9)


def probe_fit_seconds(cfg, work: Work, features: int, rate: float) -> float:
    """The fit's arithmetic (probe.fit_probe) over ``rate``: ridge, two Gram matrices and a
    float64 Cholesky per penalty; softmax, L-BFGS iterations of forward and backward passes."""
    p, N, d, K = cfg.probe, work.task.train, features, work.task.classes
    fits = len(list(p.l2)) + (1 if len(list(p.l2)) > 1 else 0)
    if str(p.method) == "ridge":
        flops = 2 * 1.8 * N * d * d + fits * (2 * d ** 3 / 3 + 4 * d * d * K)
        return flops / rate
    return fits * int(p.max_iter) * (6 * N * d * K / rate + 2e-4)


def burst_seconds(cfg, work: Work, b: Burst, rate: float = 0.0, forward: float | None = None) -> float:
    """A network's wall time from its shape's burst and its task's size. A probe's ``forward``:
    the seconds of its source's forward pass, where another probe's pass serves it (default: its
    own units 1..n over the task's images)."""
    from ..train import eval_steps

    tc, size = cfg.train, work.task
    if work.probe:
        forward = (size.train + size.val) * b.prefix_image if forward is None else forward
        return b.build + forward + probe_fit_seconds(cfg, work, b.features, rate)
    B, epochs = int(tc.batch_size), int(tc.epochs)
    steps = max(1, size.train // B)
    evals = len(eval_steps(steps, tc.get("evals_per_epoch", 1)))
    cache = (size.train + B + size.val) * b.prefix_image if b.start else 0.0
    return b.build + cache + epochs * (steps * b.step + evals * size.val * b.eval_image + b.checkpoint) + b.checkpoint


def _nearest(measured: dict, shape: tuple) -> tuple | None:
    """A measured shape that does at least as much work as ``shape`` (fewer frozen units, same
    kind): an upper bound where the burst budget ran out."""
    same = [s for s in measured if s[1:] == shape[1:] and s[0] <= shape[0]] if not shape[1] else \
        [s for s in measured if s[1] and s[1] >= shape[1] and s[2] == shape[2]]
    return max(same, key=lambda s: s[0] if not shape[1] else -s[1], default=None)


def _faster(a: Burst, b: Burst) -> Burst:
    """Each part of two bursts of one shape at its faster: a transient load slows one round only."""
    return Burst(*(min(x, y) for x, y in ((a.step, b.step), (a.prefix_image, b.prefix_image),
                                          (a.eval_image, b.eval_image), (a.checkpoint, b.checkpoint),
                                          (a.build, b.build))),
                 start=a.start, features=a.features, took=a.took + b.took)

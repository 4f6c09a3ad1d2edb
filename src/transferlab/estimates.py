"""Cheap per-layer estimates of transferability, beside the trained cells.

- Probe cells (treatments=[probe]): a linear classifier on the frozen unit-n activations of the
  cell's source (baseB for B3B-probe, baseA for A3B-probe, model.weights' network for
  P3B-probe), trained on the target task and evaluated on its validation images. The source
  runs in eval mode (no dropout, BatchNorm on its running statistics) on unaugmented images
  (training images centre-cropped as validation's are); activations are pooled per image
  (probe.pool) as they are computed, once per cell, and the penalty search and the final fit
  (probe.fit_probe) reuse them.
CKA between a sweep's networks, the other estimate, is cka.py's.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import torch

from .batches import make_batches
from .models import build_model, pretrained, unit_names
from .probe import fit_probe, pool


def source_network(ctx, cell, state: dict) -> torch.nn.Module:
    """The network a cell's units 1..n come from, with ``state`` loaded, in eval mode on the device."""
    cfg = ctx.cfg
    if cell.source == "pretrained":
        net = pretrained.network(cfg.model, state)
    else:
        net = build_model(cfg.model, ctx.task(cell.source, cell.split_seed).num_classes)
        net.load_state_dict(state)
    return net.to(ctx.device).eval()


@torch.no_grad()
def unit_outputs(net, x: torch.Tensor, units: int, max_features: int):
    """(pooled, shapes) of one batch in one pass: the activations of units 1..``units``, each
    pooled to at most ``max_features`` values per image (probe.pool), and each unit's shape per
    image before pooling."""
    pooled, shapes = [], []
    for layer in net.layers[:units]:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
        pooled.append(pool(x.float(), max_features))
    return pooled, shapes


def unit_features(net, batches, which: str, units: int, max_features: int, batch_size: int):
    """(features, labels, shapes): unit_outputs of every training or validation image, without
    augmentation (features[i] is unit i + 1's, one row per image)."""
    xs, ys, shapes = [[] for _ in range(units)], [], []
    for x, y in batches.plain_batches(which, batch_size):
        pooled, shapes = unit_outputs(net, x, units, max_features)
        for i, f in enumerate(pooled):
            xs[i].append(f)
        ys.append(y)
    return [torch.cat(f) for f in xs], torch.cat(ys), shapes


# Pooled features of one source on one task, kept for the next probe cell of that source in this
# process: probes of n = 1..7 of baseA then cost one pass through baseA, not seven prefixes. Slurm
# runs each cell in its own process, where a cell computes what it needs alone.
_MEMO: OrderedDict = OrderedDict()
_MEMO_LOCK = threading.Lock()
_KEY_LOCKS: dict = {}
MEMO_SOURCES = 4  # baseA and baseB of two replicates run side by side


def _units_to_share(ctx, net, batches, n: int, max_features: int) -> int | None:
    """How many units to compute in one pass and keep for the source's other probes: up to the
    largest n of the sweep, when MEMO_SOURCES sources of them fit a quarter of the free memory
    (features.py's budget); None: compute unit n alone and keep nothing."""
    from .config import parse_axis
    from .features import _memory_budget

    top = max(n, max(parse_axis(ctx.cfg.n, "n", 1, len(net.layers) - 1)))
    x, _ = next(iter(batches.plain_batches("val", 2)))
    per_image = sum(f.shape[1] for f in unit_outputs(net, x, top, max_features)[0]) * 4  # float32
    need = per_image * (len(batches.train) + len(batches.val)) * MEMO_SOURCES
    return top if need <= _memory_budget(batches.device) else None


def probe_features(ctx, cell, net, batches, sha: str, max_features: int, batch_size: int):
    """(train features, train labels, val features, val labels, shape, shared) of unit ``cell.n``
    of the source ``net`` (weights ``sha``); ``shared``: computed by an earlier cell of the process."""
    units = _units_to_share(ctx, net, batches, cell.n, max_features)
    if units is None:
        (tx, ty, shapes), (vx, vy, _) = (unit_features(net, batches, w, cell.n, max_features, batch_size)
                                         for w in ("train", "val"))
        return tx[-1], ty, vx[-1], vy, shapes[-1], False
    key = (sha, cell.target, cell.split_seed, str(ctx.device), max_features, units)
    with _MEMO_LOCK:
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:  # a second cell of the same source waits for the first one's pass
        with _MEMO_LOCK:
            hit = _MEMO.get(key)
        shared = hit is not None
        if not shared:
            hit = {w: unit_features(net, batches, w, units, max_features, batch_size) for w in ("train", "val")}
            with _MEMO_LOCK:
                _MEMO[key] = hit
                while len(_MEMO) > MEMO_SOURCES:
                    _MEMO.popitem(last=False)
    (tx, ty, shapes), (vx, vy, _) = hit["train"], hit["val"]
    return tx[cell.n - 1], ty, vx[cell.n - 1], vy, shapes[cell.n - 1], shared


def run_probe(ctx, cell, source: tuple[dict, str], seed: int, log=print) -> dict:
    """A probe cell's result, in the shape of train()'s (metrics, an empty history) plus ``probe``:
    the penalty search, the chosen penalty, the features and the seconds each part took."""
    cfg, p = ctx.cfg, ctx.cfg.probe
    started = time.perf_counter()
    target = ctx.task(cell.target, cell.split_seed)
    net = source_network(ctx, cell, source[0])
    batches = make_batches(target, ctx.dataset.mean, ctx.dataset.std, ctx.device, cfg.train.batch_size,
                           cfg.data.get("augment"))
    if ctx.device.type == "cpu" and cfg.train.threads:  # as a trained cell (train.set_threads)
        torch.set_num_threads(int(cfg.train.threads))
    train_x, train_y, val_x, val_y, shape, shared = probe_features(ctx, cell, net, batches, source[1],
                                                                   int(p.max_features), int(p.batch_size))
    feature_time = time.perf_counter() - started
    fit = fit_probe(train_x, train_y, val_x, val_y, target.num_classes, l2=[float(v) for v in p.l2],
                    holdout=float(p.holdout), max_iter=int(p.max_iter), seed=seed, method=str(p.method))
    unit = unit_names(cfg.model)[cell.n - 1]
    m = fit["metrics"]
    log(f"{p.method} probe on unit {cell.n} ({unit}, {'x'.join(map(str, shape))} pooled to {fit['features']} features), "
        f"l2 {fit['l2']:g}: val top-1 {m['val_top1']:.4f}, train top-1 {m['train_top1']:.4f} "
        f"({feature_time:.1f} s features{', shared' if shared else ''}, {fit['fit_time']:.1f} s fit)")
    total = time.perf_counter() - started
    return {"metrics": m, "history": [], "collapsed": None, "train_time": total,
            "images_per_s": (len(train_x) + len(val_x)) / max(total, 1e-9),
            "probe": {**{k: v for k, v in fit.items() if k != "metrics"}, "unit": unit, "unit_shape": list(shape),
                      "feature_time": feature_time, "features_shared": shared, "max_features": int(p.max_features)}}

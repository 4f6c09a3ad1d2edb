"""Run one cell: get its source base, build the network, copy / freeze / re-initialise the first
n layers, train on the target task, evaluate, and write the record atomically.

Training saves a checkpoint at the end of every epoch; a cell that was killed resumes from it
and ends with exactly the weights of a run that was never interrupted."""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import threading
import time
import traceback
import zlib
from functools import cached_property

import torch
from omegaconf import OmegaConf

from . import __version__, tracking
from .cells import Cell
from .data import Dataset, Task, load_dataset, make_split, task_view
from .models import build_model, copy_layers, freeze_layers, num_weight_layers, pretrained, unit_names
from .store import SweepStore, atomic_torch_save, atomic_write_json, file_sha256, load_state, timestamp
from .batches import make_batches
from .log import progress_for
from .train import TrainingDiverged, device_name, resolve_device, train


class SweepContext:
    """What every cell of a sweep shares: the config, the dataset (loaded once), the tasks."""

    def __init__(self, cfg, store: SweepStore):
        self.cfg = cfg
        self.store = store
        self.device = resolve_device(cfg.device)
        self._tasks: dict = {}
        self._lock = threading.Lock()  # networks may train side by side in threads (executors)

    @cached_property
    def dataset(self) -> Dataset:
        return load_dataset(self.cfg.data)

    def split(self, split_seed: int):
        ds = self.dataset
        return make_split(self.cfg.split.name, ds.num_classes, split_seed, ds.class_groups())

    def task(self, name: str, split_seed: int) -> Task:
        key = (name, split_seed)
        with self._lock:
            if key not in self._tasks:
                classes = list(self.split(split_seed).task(name))
                self._tasks[key] = task_view(self.dataset, name, classes)
            return self._tasks[key]


def _seed_for(cell: Cell, purpose: str) -> int:
    """A stable seed per (training seed, cell, purpose): reruns reproduce each cell exactly."""
    return (cell.seed * 1_000_003 + zlib.crc32(f"{cell.key}/{purpose}".encode())) % 2**31


def load_source(ctx: SweepContext, cell: Cell) -> tuple[dict, str] | None:
    """The weights of the base a cell copies from and the SHA-256 of the very bytes they were
    read from (None for bases and random-weights cells; for a pretrained source, the checkpoint of
    model.weights). Weights that differ from what the base's record says it wrote, or from the
    weights file the sweep folder was set up with, are refused."""
    if cell.source == "pretrained":
        return pretrained_source(ctx)
    base = cell.base_dependency
    if base is None:
        return None
    data = ctx.store.model_path(base.key).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    want = (ctx.store.read_record(base.key) or {}).get("model_sha256")
    if want is not None and want != sha:
        raise RuntimeError(f"the weights of {base.name} ({ctx.store.model_path(base.key)}) are not the ones its "
                           f"record lists (sha256 {sha[:12]}... instead of {want[:12]}...)")
    return load_state(io.BytesIO(data)), sha


def pretrained_source(ctx: SweepContext) -> tuple[dict, str]:
    """The checkpoint of model.weights and its SHA-256, which must be the one sweep.json lists."""
    path = pretrained.resolve(ctx.cfg.model)
    state, sha = pretrained.read(path)
    try:
        want = json.loads((ctx.store.root / "sweep.json").read_text())["config"].get("weights_sha256")
    except (OSError, ValueError, KeyError, AttributeError):
        want = None
    if want is not None and want != sha:
        raise RuntimeError(f"the weights file {path} is not the one this sweep folder was set up with "
                           f"(sha256 {sha[:12]}... instead of {want[:12]}...)")
    return state, sha


def transfer_plan(cell: Cell, train_cfg) -> tuple[int, int]:
    """(frozen, transferred): how many leading units do not learn, and how many units the cell
    copied from a source to fine-tune them (BnB+, AnB+: train.transfer_lr_mult and
    train.layer_decay set their learning rates). train.transfer_lr_mult=0 freezes those units."""
    transferred = cell.n if cell.finetune and cell.source not in (None, "random") else 0
    if transferred and float(train_cfg.get("transfer_lr_mult", 1.0)) == 0:
        return transferred, transferred
    return cell.frozen_layers, transferred


def build_cell_model(ctx: SweepContext, cell: Cell, source: dict | None = None):
    """The network of a cell before training, with its first n layers set up (``source``: the
    base's weights, read from the store when not given)."""
    cfg = ctx.cfg
    target = ctx.task(cell.target, cell.split_seed)
    g = torch.Generator().manual_seed(_seed_for(cell, "init"))
    model = build_model(cfg.model, target.num_classes, generator=g)
    base = cell.base_dependency
    if cell.source == "pretrained":  # the checkpoint's network, its own head never copied (n < L)
        copy_layers(model, pretrained.network(cfg.model, source if source is not None else load_source(ctx, cell)[0]),
                    cell.n)
    elif base is not None:
        net = build_model(cfg.model, ctx.task(base.target, cell.split_seed).num_classes)
        net.load_state_dict(source if source is not None else load_source(ctx, cell)[0])
        copy_layers(model, net, cell.n)
        # Layers n+1..L keep the fresh init drawn above: the same initialiser as a new base.
    freeze_layers(model, transfer_plan(cell, cfg.train)[0])
    return model


def versions() -> dict:
    import hydra
    import numpy
    import pandas
    import torchvision

    return {"transferlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "hydra": hydra.__version__}


HERE = os.path.dirname(os.path.abspath(__file__))


def _git(where: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(where: str = HERE) -> dict:
    """git_commit: the commit of the source this runs from; git_dirty: whether tracked files
    differ from it (then the commit alone does not name the code). Both None outside a git
    checkout (e.g. an installed wheel)."""
    commit = _git(where, "rev-parse", "HEAD") or None
    status = _git(where, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
              "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_CLUSTER_NAME")


def load_checkpoint(store: SweepStore, cell: Cell) -> dict | None:
    """The cell's last per-epoch checkpoint, or None. An unreadable one is reported, deleted and
    the cell starts from scratch (which ends with the same weights, only later)."""
    path = store.checkpoint_path(cell.key)
    if not path.exists():
        return None
    try:
        state = load_state(path)
        if not isinstance(state, dict) or state.get("key") != cell.key or "optimizer" not in state:
            raise ValueError("not a checkpoint of this cell")
        return state
    except Exception as e:  # torch.load raises many types on truncated or garbled files
        store.report(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        path.unlink(missing_ok=True)
        return None


def run_cell(ctx: SweepContext, cell: Cell, log=print, run_id: str | None = None, should_stop=None) -> dict:
    """Train a cell and write its record (status done, or failed with the reason; a cell whose
    training collapsed is done with the reason in ``collapsed``, and the analysis leaves it out;
    a base whose training collapsed fails, with every cell that needs it). The caller
    holds the cell's lock (store.lock): no one else writes into its folder meanwhile. When
    ``should_stop()`` says so, training raises train.Interrupted and no record is written (the
    last epoch's checkpoint resumes it)."""
    cfg, store = ctx.cfg, ctx.store
    started = time.time()
    attempt = store.start_attempt(cell.key)
    frozen, transferred = transfer_plan(cell, cfg.train)
    tuned = {k: float(cfg.train[k]) if transferred else None for k in ("transfer_lr_mult", "layer_decay")}
    record = {
        "status": "running", **cell.as_dict(), "frozen_layers": frozen, **tuned, "run_id": run_id,
        "attempt": attempt, "restarts": attempt - 1, "resumed_from_epoch": 0,
        "started_at": timestamp(),
        "seeds": {"train": cell.seed, "split": cell.split_seed, "init": _seed_for(cell, "init"),
                  "data": int(cfg.data.get("seed", 0))},
        "source_key": cell.base_dependency.key if cell.base_dependency else None,
        "num_layers": num_weight_layers(cfg.model),
        "architecture": cfg.model.name, "units": unit_names(cfg.model),
        "device": str(ctx.device), "device_name": device_name(ctx.device),
        "host": socket.gethostname(), **git_state(), "versions": versions(),
        "launcher": cfg.launcher.name,
        "slurm": {k[6:].lower(): os.environ[k] for k in SLURM_VARS if k in os.environ},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    try:
        target = ctx.task(cell.target, cell.split_seed)
        record.update(target_classes=target.num_classes, classes=list(target.classes), val_images=len(target.val))
        source = load_source(ctx, cell)
        record["source_sha256"] = source[1] if source else None
        if cell.source == "pretrained":
            record["source_weights"] = {"weights": str(cfg.model.weights), "path": str(pretrained.resolve(cfg.model))}
        if cell.probe:  # no network is trained: a linear probe on the source's unit-n features
            from .estimates import run_probe

            record.update(run_probe(ctx, cell, source, _seed_for(cell, "probe"), log=log))
        else:
            record.update(_train_cell(ctx, cell, source[0] if source else None, record, log, should_stop))
        record["status"] = "done"
    except Exception as e:  # contained: the sweep goes on with the other cells
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
    record["wall_time"] = time.time() - started
    record["finished_at"] = timestamp()
    atomic_write_json(store.record_path(cell.key), record)
    if record["status"] == "done":  # the record is the commit point; the checkpoint has served
        store.checkpoint_path(cell.key).unlink(missing_ok=True)
    return record


def _train_cell(ctx: SweepContext, cell: Cell, source: dict | None, record: dict, log, should_stop) -> dict:
    """Train a (non-probe) cell from its source's weights; returns train()'s result and the
    weights' SHA-256 where they are saved. ``record["resumed_from_epoch"]`` is set on a resume."""
    cfg, store = ctx.cfg, ctx.store
    frozen, transferred = transfer_plan(cell, cfg.train)
    model = build_cell_model(ctx, cell, source).to(ctx.device)
    batches = make_batches(ctx.task(cell.target, cell.split_seed), ctx.dataset.mean, ctx.dataset.std, ctx.device,
                           cfg.train.batch_size, cfg.data.get("augment"))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()} if frozen else None
    checkpoint = store.checkpoint_path(cell.key)
    resume = load_checkpoint(store, cell)
    events = tracking.network_events(cfg, store.root, cell)  # logger=tensorboard: its run, as it trains
    if resume is not None:
        record["resumed_from_epoch"] = int(resume["epoch"])
        log(f"resuming from the checkpoint of epoch {resume['epoch']}")
    result = train(model, batches, cfg.train, frozen_layers=frozen, transferred=transferred,
                   seed=_seed_for(cell, "train"), log=log, state=resume, should_stop=should_stop,
                   progress=progress_for(cell.name),
                   on_epoch_end=events.wrap(lambda s: atomic_torch_save(checkpoint, {"key": cell.key, **s})))
    events.write(result["history"])  # what no epoch's end wrote: a collapse's last evaluations, a finished resume
    if before is not None:
        _check_frozen(model, before, frozen)
    if result["collapsed"] and cell.treatment == "base":
        raise TrainingDiverged(f"{result['collapsed']} (a base: every cell would copy its dead units)")
    if cfg.save_checkpoints or cell.treatment == "base":
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_torch_save(store.model_path(cell.key), state)
        result["model_sha256"] = file_sha256(store.model_path(cell.key))
    return result


def _check_frozen(model, before: dict, n: int) -> None:
    """Guard: frozen layers must be bit-identical after training."""
    for k, v in model.state_dict().items():
        i = int(k.split(".")[1])
        if i < n and not torch.equal(v, before[k]):
            raise RuntimeError(f"frozen parameter {k} changed during training")

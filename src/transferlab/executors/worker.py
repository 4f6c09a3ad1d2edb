"""The worker loop, shared by every executor, and the worker process's callable.

``next_step`` decides, from the records alone, what a worker should do with one network;
``run_cells`` asks it, takes the network's lock and acts: it trains each network through
runner.run_cell while holding that network's lock (store.lock). A worker that finds a network
locked by another goes on with the others and comes back to it, so concurrent workers (or two
sweeps started at once on one folder) never train a network twice.
"""
from __future__ import annotations

import enum
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .. import log as logs
from ..cells import Cell, plan
from ..config import results_root
from ..store import SweepStore, atomic_write_json, timestamp

log = logs.get(__name__)


class Step(enum.Enum):
    SKIP = "skip"                # finished by an earlier run
    DONE_HERE = "done_here"      # finished in this run, by a worker beside this one
    FAILED_HERE = "failed_here"  # failed in this run (maybe in another worker): not attempted again
    WAIT = "wait"                # for a lock, or for the base it copies from
    FAIL = "fail"                # fails without training, e.g. its base failed in this run
    TRAIN = "train"


@dataclass(frozen=True)
class Decision:
    step: Step
    key: str | None = None     # WAIT: the key of the lock to wait for
    reason: str | None = None  # FAIL: why


def _failed_in_this_run(store: SweepStore, key: str, run_id: str) -> bool:
    rec = store.read_record(key)
    return rec is not None and rec["status"] == "failed" and rec.get("run_id") == run_id


def next_step(store: SweepStore, cell: Cell, run_id: str) -> Decision:
    """What a worker should do with ``cell`` in run ``run_id``, from the records alone (it only
    reads the store). Ask again while holding the cell's lock: the worker that held it before
    may have finished it, or failed it, in between."""
    if _failed_in_this_run(store, cell.key, run_id):
        return Decision(Step.FAILED_HERE)
    dep, base_failed = cell.base_dependency, None
    if dep is not None and not store.is_done(dep.key, need_model=True):
        if not _failed_in_this_run(store, dep.key, run_id):
            return Decision(Step.WAIT, key=dep.key)  # in progress here or elsewhere: come back when it is
        base_failed = f"its base {dep.name} failed: {store.read_record(dep.key).get('error', 'unknown error')}"
    if store.is_done(cell.key, need_model=cell.treatment == "base"):
        earlier = store.read_record(cell.key).get("run_id") != run_id
        return Decision(Step.SKIP if earlier else Step.DONE_HERE)
    if base_failed:
        return Decision(Step.FAIL, reason=base_failed)
    return Decision(Step.TRAIN)


def _with_bases(cells: list[Cell]) -> list[Cell]:
    """``cells`` with the bases they copy from put first (a worker trains a missing base itself)."""
    out = []
    for c in cells:
        dep = c.base_dependency
        if dep is not None and dep not in out:
            out.append(dep)
    return out + [c for c in cells if c not in out]


def _fail_without_training(store: SweepStore, cell: Cell, run_id: str, reason: str) -> None:
    atomic_write_json(store.record_path(cell.key), {
        "status": "failed", **cell.as_dict(), "run_id": run_id, "error": reason,
        "finished_at": timestamp()})


class Once:
    """Which networks workers of this process have already announced (thread-safe)."""

    def __init__(self):
        self._seen: set = set()
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        with self._lock:
            new = key not in self._seen
            self._seen.add(key)
            return new


class _Loop:
    """One worker's pass over the plan: its counts, its training time for the ETA, and what it
    says about each network."""

    def __init__(self, ctx, cells: list[Cell], run_id: str, say, should_stop, parallel: int, once: Once):
        from ..runner import run_cell  # torch and the models: only where networks are trained

        self.run_cell, self.ctx, self.store, self.run_id = run_cell, ctx, ctx.store, run_id
        self.say, self.should_stop, self.parallel, self.once = say, should_stop, parallel, once
        self.everything = _with_bases(list(cells))
        self.index = {c.key: i for i, c in enumerate(self.everything, 1)}
        self.total = len(self.everything)
        self.counts = {"trained": 0, "skipped": 0, "failed": 0}
        self.t0, self.trained_time = time.time(), 0.0

    def stopping(self) -> bool:
        return bool(self.should_stop and self.should_stop())

    def attempt(self, cell: Cell) -> str | None:
        """None once the cell is dealt with, else the key of the lock it waits for."""
        store = self.store
        first = next_step(store, cell, self.run_id)
        if first.step in (Step.FAILED_HERE, Step.WAIT):  # no lock needed to know
            return self.act(cell, first)
        with store.lock(cell.key, blocking=False) as mine:
            if not mine:
                return cell.key
            return self.act(cell, next_step(store, cell, self.run_id))

    def act(self, cell: Cell, d: Decision) -> str | None:
        """Carry out ``d`` for ``cell`` (holding its lock where it trains or writes)."""
        head = f"[{self.index[cell.key]}/{self.total}] {cell.name} ({cell.key})"
        if d.step is Step.WAIT:
            return d.key
        if d.step is Step.FAILED_HERE:  # by another worker, or by the one that held the lock
            self.counts["failed"] += 1
        elif d.step is Step.SKIP:  # finished by an earlier run, not by a worker beside this one
            if self.once.first(cell.key):
                self.counts["skipped"] += 1
                self.say(f"{head}: already finished, skipped")
        elif d.step is Step.FAIL:
            _fail_without_training(self.store, cell, self.run_id, d.reason)
            self.counts["failed"] += 1
            self.say(f"{head}: FAILED: {d.reason}")
        elif d.step is Step.TRAIN:
            self.train(cell, head)
        return None

    def train(self, cell: Cell, head: str) -> None:
        say = self.say
        from ..runner import transfer_plan

        if cell.probe:
            say(f"{head}: a linear probe on task {cell.target} on unit {cell.n} of {cell.source_name}")
        else:
            say(f"{head}: training on task {cell.target}, {transfer_plan(cell, self.ctx.cfg.train)[0]} frozen layer(s)")
        rec = self.run_cell(self.ctx, cell, log=lambda m: say(f"  {cell.name} {m}"), run_id=self.run_id,
                            should_stop=self.should_stop)
        self.trained_time += rec["wall_time"]
        if rec["status"] == "done":
            self.counts["trained"] += 1
            m = rec["metrics"]
            warn = ""
            if cell.treatment == "base" and m["val_top1"] < 2.0 / rec["target_classes"]:
                warn = "  WARNING: this base network is near chance; the sweep will measure nothing"
            if rec.get("collapsed"):
                warn = f"  COLLAPSED, left out of the tables: {rec['collapsed']}"
            say(f"{head}: val top1 {m['val_top1']:.1%} in {rec['wall_time']:.1f}s{warn}")
        else:
            self.counts["failed"] += 1
            say(f"{head}: FAILED: {rec['error']}")
        left = sum(1 for c in self.everything if not self.store.is_done(c.key))
        eta = self.trained_time / max(1, self.counts["trained"] + self.counts["failed"]) * left / self.parallel
        say(f"progress: {self.total - left}/{self.total} networks finished, elapsed "
            f"{time.time() - self.t0:.0f}s, ETA {eta:.0f}s")


def run_cells(ctx, cells: list[Cell], run_id: str, say=None, should_stop=None, parallel: int = 1,
              once: Once | None = None) -> dict:
    """Train every unfinished network of ``cells`` (and the bases they need) in this process.

    Returns this worker's counts: trained, skipped (finished before), failed. A network locked
    by another worker is skipped for now and retried after the others; when nothing else is
    left the worker waits for that lock. Within one run (``run_id``) a network is attempted at
    most once: a cell whose base failed in this run fails at once, naming the base's error.
    ``parallel``: how many workers share the plan (for the ETA); ``should_stop()``: end early;
    ``once``: shared by the workers of one process, so each skip is announced once.
    """
    loop = _Loop(ctx, cells, run_id, say or log.info, should_stop, parallel, once or Once())
    queue = list(loop.everything)
    while queue and not loop.stopping():
        waiting = [(c, key) for c in queue if not loop.stopping() and (key := loop.attempt(c)) is not None]
        queue = [c for c, _ in waiting]
        if waiting:  # every one left is held by another worker: wait for the first
            _wait_for_lock(ctx.store, waiting[0][1], loop.stopping)
            time.sleep(0.1)
    return loop.counts


def _wait_for_lock(store: SweepStore, key: str, stopping, poll_s: float = 0.1) -> None:
    """Until the lock of ``key`` is free (whoever held it, in any process, is done with it) or
    ``stopping()`` says to end: a worker stopped by Ctrl-C does not wait for another's network."""
    while not stopping():
        with store.lock(key, blocking=False) as free:
            if free:
                return
        time.sleep(poll_s)


@dataclass
class Worker:
    """What a worker process runs: ``Worker(...)(keys)`` trains those networks of the sweep.

    Picklable (submitit pickles it into each job) and importable from transferlab. On
    preemption or timeout submitit calls ``checkpoint`` and requeues the same call; the
    networks' own checkpoints on disk carry the progress.
    """
    config: dict                     # the resolved sweep config, results_dir absolute
    run_id: str
    cuda_devices: str | None = None  # this worker's GPU(s), in the launching process's numbering

    def __call__(self, keys: list[str]) -> dict:
        # CPU threads per network come from the recipe (train.threads), set by the trainer.
        if self.cuda_devices is not None:  # before anything initialises CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = self.cuda_devices
        from ..runner import SweepContext

        cfg = OmegaConf.create(self.config)
        ctx = SweepContext(cfg, SweepStore(results_root(cfg)))
        by_key = {c.key: c for c in plan(cfg)}
        logs.console(quiet=cfg.get("quiet", False), verbose=cfg.get("verbose", False))  # into the job's log
        return run_cells(ctx, [by_key[k] for k in keys], self.run_id)

    def checkpoint(self, keys: list[str]):
        import submitit

        return submitit.helpers.DelayedSubmission(self, keys)


def worker_config(cfg, root: Path, device: str | None = None) -> dict:
    """The config a worker process gets: resolved, with the sweep folder as an absolute path."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c["results_dir"], c["name"] = str(root.parent), root.name
    if device is not None:
        c["device"] = device
    return c

"""Executors: where the networks of a sweep are trained, behind one interface.

- ``local``           in this process, one after another
- ``submitit_local``  N worker processes on this machine, one per GPU (or CPU workers sharing
                      the cores), started through submitit's LocalExecutor
- ``slurm``           Slurm job arrays through submitit: one array for the base networks, then
                      one for the cells, which starts once the bases' array has ended
                      (``--dependency=afterany``); one network per array task

All of them run the same loop, ``run_cells``, which trains each network through
runner.run_cell while holding that network's lock (store.lock). A worker that finds a network
locked by another goes on with the others and comes back to it, so concurrent workers (or two
sweeps started at once on one folder) never train a network twice. The records on disk are the
truth: progress and the final summary are read from them, whoever wrote them.

Crash safety comes from the runner's per-epoch checkpoints: a worker killed mid-cell, or a Slurm
task preempted (submitit catches SIGUSR2, calls ``Worker.checkpoint`` and requeues the task),
resumes every unfinished network from its last checkpoint when it runs again.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .cells import Cell, plan
from .config import ConfigError, check_count, results_root
from .store import SweepStore, atomic_write_json, timestamp


class LaunchError(RuntimeError):
    """The scheduler refused or could not be reached (sbatch, squeue); nothing was trained."""


def new_run_id() -> str:
    """Names one invocation of the sweep; records carry it, so a summary can tell what this run
    trained from what an earlier one did, and a network fails at most once per run."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------
# The worker loop, shared by every executor.

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


def run_cells(ctx, cells: list[Cell], run_id: str, say=print, should_stop=None, parallel: int = 1,
              once: Once | None = None) -> dict:
    """Train every unfinished network of ``cells`` (and the bases they need) in this process.

    Returns this worker's counts: trained, skipped (finished before), failed. A network locked
    by another worker is skipped for now and retried after the others; when nothing else is
    left the worker waits for that lock. Within one run (``run_id``) a network is attempted at
    most once: a cell whose base failed in this run fails at once, naming the base's error.
    ``parallel``: how many workers share the plan (for the ETA); ``should_stop()``: end early;
    ``once``: shared by the workers of one process, so each skip is announced once.
    """
    once = once or Once()
    from .runner import run_cell  # torch and the models: only where networks are trained

    store = ctx.store
    queue = _with_bases(list(cells))
    everything = list(queue)
    index, total = {c.key: i for i, c in enumerate(everything, 1)}, len(everything)
    counts = {"trained": 0, "skipped": 0, "failed": 0}
    t0, trained_time = time.time(), 0.0

    def failed_in_this_run(key: str) -> bool:
        rec = store.read_record(key)
        return rec is not None and rec["status"] == "failed" and rec.get("run_id") == run_id

    def attempt(cell: Cell) -> str | None:
        """None once the cell is dealt with, else the key of the lock it waits for."""
        nonlocal trained_time
        head = f"[{index[cell.key]}/{total}] {cell.name} ({cell.key})"
        need_model = cell.treatment == "base"
        if failed_in_this_run(cell.key):  # maybe in another worker
            counts["failed"] += 1
            return None
        dep, base_failed = cell.base_dependency, None
        if dep is not None and not store.is_done(dep.key, need_model=True):
            if not failed_in_this_run(dep.key):
                return dep.key  # in progress here or elsewhere: come back when it is
            base_failed = f"its base {dep.name} failed: {store.read_record(dep.key).get('error', 'unknown error')}"
        with store.lock(cell.key, blocking=False) as mine:
            if not mine:
                return cell.key
            if failed_in_this_run(cell.key):  # by the worker that held the lock
                counts["failed"] += 1
                return None
            if store.is_done(cell.key, need_model=need_model):
                # finished by an earlier run, not by a worker beside this one
                if store.read_record(cell.key).get("run_id") != run_id and once.first(cell.key):
                    counts["skipped"] += 1
                    say(f"{head}: already finished, skipped")
                return None
            if base_failed:
                reason = base_failed
                _fail_without_training(store, cell, run_id, reason)
                counts["failed"] += 1
                say(f"{head}: FAILED: {reason}")
                return None
            say(f"{head}: training on task {cell.target}, {cell.frozen_layers} frozen layer(s)")
            rec = run_cell(ctx, cell, log=lambda m: say(f"  {cell.name} {m}"), run_id=run_id,
                           should_stop=should_stop)
        trained_time += rec["wall_time"]
        if rec["status"] == "done":
            counts["trained"] += 1
            m = rec["metrics"]
            warn = ""
            if cell.treatment == "base" and m["val_top1"] < 2.0 / rec["target_classes"]:
                warn = "  WARNING: this base network is near chance; the sweep will measure nothing"
            if rec.get("collapsed"):
                warn = f"  COLLAPSED, left out of the tables: {rec['collapsed']}"
            say(f"{head}: val top1 {m['val_top1']:.1%} in {rec['wall_time']:.1f}s{warn}")
        else:
            counts["failed"] += 1
            say(f"{head}: FAILED: {rec['error']}")
        left = sum(1 for c in everything if not store.is_done(c.key))
        eta = trained_time / max(1, counts["trained"] + counts["failed"]) * left / parallel
        say(f"progress: {total - left}/{total} networks finished, elapsed "
            f"{time.time() - t0:.0f}s, ETA {eta:.0f}s")
        return None

    while queue and not (should_stop and should_stop()):
        waiting = [(c, key) for c in queue if not (should_stop and should_stop()) and (key := attempt(c)) is not None]
        queue = [c for c, _ in waiting]
        if waiting:  # every one left is held by another worker: wait for the first
            with store.lock(waiting[0][1]):
                pass
            time.sleep(0.1)
    return counts


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
        from .runner import SweepContext

        cfg = OmegaConf.create(self.config)
        ctx = SweepContext(cfg, SweepStore(results_root(cfg)))
        by_key = {c.key: c for c in plan(cfg)}
        return run_cells(ctx, [by_key[k] for k in keys], self.run_id, say=lambda m: print(m, flush=True))

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


# ------------------------------------------------------------------------------------------
# Progress and summary, read from the records on disk.

def progress(store: SweepStore, cells: list[Cell]) -> tuple[int, int]:
    """(finished, failed) networks among ``cells``."""
    recs = [store.read_record(c.key) for c in cells]
    return (sum(1 for r in recs if r is not None and r["status"] == "done"),
            sum(1 for r in recs if r is not None and r["status"] == "failed"))


def summarize(store: SweepStore, cells: list[Cell], run_id: str) -> dict:
    """trained (in this run), skipped (finished before), failed, not run; failures' reasons and
    the finished networks whose training collapsed (with theirs)."""
    out = {"trained": 0, "skipped": 0, "failed": 0, "not_run": 0, "collapsed": {}, "errors": {}}
    for c in cells:
        rec = store.read_record(c.key)
        if rec is None:
            out["not_run"] += 1
        elif rec["status"] == "done":
            out["trained" if rec.get("run_id") == run_id else "skipped"] += 1
            if rec.get("collapsed"):
                out["collapsed"][c.key] = rec["collapsed"]
        else:
            out["failed"] += 1
            out["errors"][c.key] = str(rec.get("error", "unknown error")).splitlines()[0]
    return out


# ------------------------------------------------------------------------------------------
# Executors.

class Executor:
    """Trains the networks of a sweep somewhere. ``run`` returns the id of the run whose work
    it saw to the end (``run_id``, or the earlier submission it waited for), so the summary can
    tell what that run trained; None when it submitted jobs that are still running."""

    def run(self, ctx, cells: list[Cell], run_id: str) -> str | None:
        raise NotImplementedError


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a Slurm allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_workers(cfg, device, files: bool = False) -> int:
    """How many networks ``launcher=local`` trains at once: launcher.workers, where auto is the
    CPU cores over train.threads on a CPU, and 1 on CUDA, with torch.compile, or when the
    images are read from files (``files``: DataLoader worker processes already use the cores,
    and forking them from several threads at once is what multiprocessing warns against)."""
    workers = cfg.launcher.get("workers", 1)
    if workers != "auto":
        return int(workers)
    if device.type != "cpu" or cfg.train.get("compile") or files:
        return 1
    return max(1, cpu_cores() // max(1, int(cfg.train.get("threads", 1) or 1)))


class InProcess(Executor):
    """In this process, ``local_workers`` networks at once, one per thread. Each network runs
    its ops on train.threads CPU threads, so its result does not depend on what trains beside
    it; the per-network locks share the plan out exactly as between worker processes. Ctrl-C
    stops every worker after its current step (the checkpoints of the last epochs stay)."""

    def run(self, ctx, cells, run_id):
        from .data import FileSet
        from .train import Interrupted, set_threads

        workers = local_workers(ctx.cfg, ctx.device)
        if workers > 1:  # loads the images once, before the threads share them (with one worker, not at all here)
            workers = local_workers(ctx.cfg, ctx.device, files=isinstance(ctx.dataset.train, FileSet))
        set_threads(ctx.cfg.train, ctx.device)
        say = lambda m: print(m, flush=True)  # noqa: E731
        if workers == 1:
            run_cells(ctx, cells, run_id, say=say)
            return run_id
        stop, errors, once = threading.Event(), [], Once()

        def work():
            try:
                run_cells(ctx, cells, run_id, say=say, should_stop=stop.is_set, parallel=workers, once=once)
            except Interrupted:
                pass
            except BaseException as e:  # noqa: BLE001  re-raised in the main thread
                errors.append(e)
                stop.set()

        threads = [threading.Thread(target=work, name=f"transferlab-worker-{i}", daemon=True) for i in range(workers)]
        say(f"{workers} networks at a time in this process, {ctx.cfg.train.threads} CPU thread(s) each")
        for t in threads:
            t.start()
        try:
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(timeout=0.2)  # a timeout, so Ctrl-C reaches this thread
        except KeyboardInterrupt:
            stop.set()
            for t in threads:
                t.join()
            raise
        if errors:
            raise errors[0]
        return run_id


def _visible_gpus() -> list[str]:
    """This process's GPUs, named as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    import torch

    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in env.split(",") if d.strip()] if env else [str(i) for i in range(n)]
    return names[:n]


def _wait(store: SweepStore, cells: list[Cell], still_running, poll_s: float, what: str) -> None:
    """Print progress from the records whenever it changes, until ``still_running()`` is empty."""
    last = None
    while True:
        try:
            running = still_running()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # a scheduler hiccup
            print(f"warning: {e}; retrying in {poll_s:.0f}s", flush=True)
            time.sleep(poll_s)
            continue
        done, failed = progress(store, cells)
        line = f"progress: {done}/{len(cells)} networks finished, {failed} failed; {running or 'no'} {what}"
        if line != last:
            print(line, flush=True)
            last = line
        if not running:
            return
        time.sleep(poll_s)


class LocalWorkers(Executor):
    """N worker processes through submitit's LocalExecutor, each running ``run_cells`` over the
    whole plan (bases first); the locks share the work out. On a CUDA device one worker per
    visible GPU by default, each seeing only its own (CUDA_VISIBLE_DEVICES); on a CPU the
    workers split the cores."""

    def __init__(self, launcher):
        self.lc = launcher

    def run(self, ctx, cells, run_id):
        import submitit

        lc, store = self.lc, ctx.store
        gpus = _visible_gpus() if ctx.device.type == "cuda" else []
        if ctx.cfg.device.startswith("cuda:"):  # one chosen GPU: every worker shares it
            gpus = [gpus[int(ctx.cfg.device.split(":")[1])]]
        workers = int(lc.workers) if lc.workers != "auto" else max(1, len(gpus))
        folder = store.root / "workers"
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=float(lc.timeout_min), signal_delay_s=int(lc.signal_delay_s))
        config = worker_config(ctx.cfg, store.root, "cuda" if gpus else None)
        keys = [c.key for c in cells]
        jobs = []
        for i in range(workers):
            jobs.append(ex.submit(Worker(config, run_id, cuda_devices=gpus[i % len(gpus)] if gpus else None), keys))
        where = f"GPU {', '.join(gpus)}" if gpus else f"CPU, {ctx.cfg.train.threads} thread(s) each (train.threads)"
        print(f"{workers} local worker(s) ({where}); their logs: {folder}/<pid>_0_log.out", flush=True)
        try:
            _wait(store, cells, lambda: sum(not j.done() for j in jobs), float(lc.poll_s), "worker(s) running")
        except KeyboardInterrupt:
            for j in jobs:
                j.cancel()
            raise
        for i, j in enumerate(jobs):
            try:
                j.result()
            except Exception as e:  # a worker that died: its networks resume on the next run
                print(f"worker {i} ended abnormally ({str(e).strip().splitlines()[-1]}); log: {j.paths.stdout}")
        return run_id


# Slurm --------------------------------------------------------------------------------------

SLURM_KEYS = ("partition", "account", "qos", "constraint", "gpus_per_task", "cpus_per_task",
              "mem_gb", "timeout_min", "array_parallelism", "signal_delay_s", "setup",
              "additional_parameters", "exclude", "comment")


def slurm_parameters(lc) -> dict:
    """submitit SlurmExecutor parameters from the launcher config (unset ones left out)."""
    p = {k: lc.get(k) for k in SLURM_KEYS}
    p["time"] = int(p.pop("timeout_min"))
    p["mem"] = p.pop("mem_gb")
    p = {k: v for k, v in p.items() if v not in (None, 0, "", [], {})}
    for k in ("setup", "additional_parameters"):
        if k in p:
            p[k] = OmegaConf.to_container(p[k]) if OmegaConf.is_config(p[k]) else p[k]
    return p


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} of those jobs (array ids) still known to the scheduler, e.g.
    {"123_4": "RUNNING"}. Uses squeue, so it needs no accounting database."""
    if not job_ids:
        return {}
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%F|%i|%T"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    wanted, states = set(map(str, job_ids)), {}
    for line in out.stdout.splitlines():
        array_id, job_id, state = (line.split("|") + ["", ""])[:3]
        if array_id in wanted:
            states[job_id] = state
    return states


class SlurmArrays(Executor):
    """One array job for the base networks, one for the cells (``afterany`` on the first: a
    cell's task finds its base done, or fails naming the base's error). One network per task,
    so a preempted or timed-out task requeues and resumes only its own network. Per-task logs
    and submitit's files go to <sweep>/slurm/ (<array id>_<task>_0_log.out); slurm/jobs.json
    lists what was submitted, so running the command again shows progress instead of
    submitting twice."""

    def __init__(self, launcher):
        self.lc = launcher

    def run(self, ctx, cells, run_id):
        store, lc = ctx.store, self.lc
        folder = store.root / "slurm"
        history = self.submissions(folder)
        try:
            active = squeue_states([j for s in history for j in s["job_ids"]])
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            raise LaunchError(str(e)) from None
        if active:
            print(f"this sweep's jobs are still queued or running ({self.counts(active)}): "
                  f"not submitting again", flush=True)
            self.print_follow(folder, sorted({j.split('_')[0] for j in active}))
            run_id = history[-1]["run_id"]  # waiting for that run's work
        else:
            todo = [c for c in cells if not store.is_done(c.key, need_model=c.treatment == "base")]
            if not todo:
                return run_id
            history.append({"run_id": run_id, "submitted_at": timestamp(),
                            "job_ids": [], "keys": {}})
            self.submit(ctx, todo, run_id, folder, history)
            self.print_follow(folder, history[-1]["job_ids"])
        if not lc.wait:
            return None
        ids = [j for s in history for j in s["job_ids"]]
        _wait(store, cells, lambda: self.counts(squeue_states(ids)), float(lc.poll_s), "Slurm task(s)")
        return run_id

    def submit(self, ctx, todo: list[Cell], run_id: str, folder: Path, history: list[dict]) -> None:
        """Submit the bases' array, then the cells' array depending on it; each is added to
        slurm/jobs.json as soon as Slurm has it (so a failure in between loses no job id)."""
        import submitit

        lc, sub = self.lc, history[-1]
        config = worker_config(ctx.cfg, ctx.store.root)
        bases = [c for c in todo if c.treatment == "base"]
        rest = [c for c in todo if c.treatment != "base"]
        dependency, name = None, ctx.store.root.name
        for what, group in (("bases", bases), ("cells", rest)):
            if not group:
                continue
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(lc.max_num_timeout))
            ex.update_parameters(job_name=f"transferlab-{name}-{what}", **slurm_parameters(lc))
            if dependency:
                ex.update_parameters(dependency=dependency)
            try:
                jobs = ex.map_array(Worker(config, run_id), [[c.key] for c in group])
            except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as e:
                raise LaunchError(f"sbatch refused the {what}' array: {str(e).strip()}") from None
            array_id = jobs[0].job_id.split("_")[0]
            sub["job_ids"].append(array_id)
            sub["keys"][array_id] = [c.key for c in group]
            atomic_write_json(folder / "jobs.json", history)
            print(f"submitted {what}: job array {array_id} ({len(group)} task(s), "
                  f"{what} {'after ' + dependency if dependency else 'now'})", flush=True)
            dependency = f"afterany:{array_id}"

    @staticmethod
    def submissions(folder: Path) -> list[dict]:
        try:
            return json.loads((folder / "jobs.json").read_text())
        except (FileNotFoundError, ValueError):
            return []

    @staticmethod
    def counts(states: dict[str, str]) -> str:
        from collections import Counter

        return ", ".join(f"{n} {s.lower()}" for s, n in sorted(Counter(states.values()).items()))

    @staticmethod
    def print_follow(folder: Path, ids: list[str]) -> None:
        j = ",".join(ids)
        print("follow them with:\n"
              f"  squeue -j {j}                 # queued / running tasks\n"
              f"  sacct -j {j} -X               # states and exit codes (where accounting is on)\n"
              f"  tail -f {folder}/{ids[-1]}_*_0_log.out   # a task's log (.err: its errors)\n"
              "  rerun this same command      # progress; resubmits only what is unfinished once "
              "these jobs are gone\n"
              f"  scancel {' '.join(ids)}                  # stop them (finished networks are kept)", flush=True)


def make_executor(cfg) -> Executor:
    """The executor that ``launcher=...`` names; checks what it needs before any training."""
    lc = cfg.launcher
    if lc.name == "local":
        if "workers" in lc:
            check_count(cfg, "launcher.workers", auto=True)
        return InProcess()
    if lc.name in ("submitit_local", "slurm"):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"launcher={lc.name} needs submitit: pip install 'transferlab[slurm]'") from None
    if lc.name == "submitit_local":
        check_count(cfg, "launcher.workers", auto=True)
        return LocalWorkers(lc)
    if lc.name == "slurm":
        missing = [t for t in ("sbatch", "squeue", "srun") if shutil.which(t) is None]
        if missing:
            raise ConfigError(f"launcher=slurm needs Slurm's {', '.join(missing)} on PATH; run the sweep "
                              f"on a machine that submits to the cluster (a login node)")
        for k in ("timeout_min", "array_parallelism"):
            if not (isinstance(lc.get(k), int) and lc.get(k) >= 1):
                raise ConfigError(f"launcher.{k}={lc.get(k)!r} is not valid; expected an integer >= 1")
        return SlurmArrays(lc)
    raise ConfigError(f"launcher.name={lc.name!r} is not valid; allowed: local, submitit_local, slurm")

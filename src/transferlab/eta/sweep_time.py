"""The sweep's estimate: every network's time (finished records, else bursts), laid out as the
launcher runs them; the dry run's report and launcher=slurm's timeout warning."""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ..log import get
from .bursts import Burst, _faster, _nearest, burst, burst_seconds, matmul_rate
from .work import Work, cache_applies, from_records, in_memory, record_seconds, work_of

log = get(__name__)

BURST_BUDGET_S = 30.0   # no new shape is measured after this long; the rest take a measured shape's time
ROUNDS = 2              # rounds over the shapes; each part of a burst counts at its fastest round ...
SECOND_ROUND_S = 5.0    # ... the second only when the first took less than this
# A burst times one network alone; networks side by side on a CPU share its caches and memory
# bandwidth too: this much longer per step (beyond sharing the cores, contention()).
SIDE_BY_SIDE = 1.0


# ---------------------------------------------------------------------------------------------
# The sweep


@dataclass
class Network:
    cell: object
    seconds: float | None   # None: no estimate (no record, and no burst here that would represent it)
    basis: str              # "records", "burst" or "none"
    done: bool = False
    records: int = 0


@dataclass
class SweepEstimate:
    networks: list[Network]
    seconds: float                  # wall time of the networks not done, laid out as the launcher runs them
    at_a_time: int
    device: str
    launcher: str
    bursts: int = 0                 # distinct shapes measured
    burst_s: float = 0.0            # seconds the bursts took
    records: int = 0                # finished records used
    load: str = ""                  # how the machine's load and the networks side by side were counted
    took: float = 0.0
    unmeasured: str = ""            # why some networks have no estimate

    @property
    def todo(self) -> list[Network]:
        return [n for n in self.networks if not n.done]

    def longest(self) -> Network | None:
        return max((n for n in self.todo if n.seconds is not None), key=lambda n: n.seconds, default=None)

    def basis(self) -> str:
        parts = []
        if self.records:
            parts.append(f"from {self.records} finished record(s)")
        if self.bursts:
            parts.append(f"measured bursts of {self.bursts} network shape(s) on {self.device}, "
                         f"{self.burst_s:.1f} s{self.load}")
        return " and ".join(parts) or "nothing measured"

    def total_line(self) -> str:
        todo, done = self.todo, len(self.networks) - len(self.todo)
        missing = [n for n in todo if n.seconds is None]
        how = (f"{self.at_a_time} at a time on {self.device}" if self.launcher != "slurm" else
               f"Slurm arrays of up to {self.at_a_time} task(s) at once, bases first, queue waits not counted")
        already = f", {done} already done" if done else ""
        unknown = f", {len(missing)} without an estimate ({self.unmeasured})" if missing else ""
        return (f"estimated time: {duration(self.seconds)} for {len(todo)} network(s){already}{unknown} ({how}; "
                f"{self.basis()}). An estimate: loading the data and drawing the figures come on top, and "
                f"another load on the machine or another device changes it")

    def lines(self) -> list[str]:
        out = ["estimated time per network:"]
        for n in self.networks:
            c = n.cell
            basis = {"records": f"{n.records} record(s)", "burst": "burst", "none": "no estimate"}[n.basis]
            took = duration(n.seconds) if n.seconds is not None else "-"
            out.append(f"  {c.name:<9} {c.key:<32} {took:>11}  ({basis}{', done' if n.done else ''})")
        out.append(self.total_line())
        return out


def duration(seconds: float) -> str:
    """6 min 10 s, 1 h 05 min, 12.3 s, 0.25 s."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r} s"
    h, r = divmod(round(s / 60), 60)
    return f"{h} h {r:02d} min"


def at_a_time(cfg, device, files: bool) -> int:
    """Networks trained at once by the launcher (slurm: tasks of an array at once)."""
    lc = cfg.launcher
    if lc.name == "slurm":
        return max(1, int(lc.get("array_parallelism") or 1))
    if lc.name == "submitit_local":
        if lc.workers != "auto":
            return int(lc.workers)
        if device.type == "cuda":
            import torch

            return max(1, torch.cuda.device_count())
        return 1
    from ..executors.local import local_workers

    return local_workers(cfg, device, files=files)


def contention(cfg, device, workers: int) -> tuple[float, str]:
    """How much longer than its CPU time a network takes here: the launcher's networks side by
    side (workers x train.threads) and the machine's other load (the 1-minute load average, in
    this process's share of the cores) share the cores. 1 on a GPU and under Slurm (a task has its
    own allocation)."""
    from ..machine import cpu_cores

    if device.type != "cpu" or cfg.launcher.name == "slurm":
        return 1.0, ""
    cores = max(1, cpu_cores())
    ours = workers * max(1, int(cfg.train.get("threads", 1) or 1))
    try:
        other = os.getloadavg()[0] * cores / max(cores, os.cpu_count() or cores)
    except (OSError, AttributeError):
        other = 0.0
    factor = max(1.0, (ours + other) / cores) * (SIDE_BY_SIDE if workers > 1 else 1.0)
    return factor, (f"; CPU time x{factor:.2f}: {ours} network thread(s) on {cores} core(s) beside a load of "
                    f"{other:.1f}")


def represented(cfg, device) -> str | None:
    """Why a burst on this machine would not represent where the networks train (None: it
    would): Slurm tasks asking for GPUs, submitted from a machine without one."""
    lc = cfg.launcher
    if lc.name != "slurm" or device.type == "cuda":
        return None
    gres = str(lc.get("gres") or "")
    if lc.get("gpus_per_task") or lc.get("gpus_per_node") or gres.startswith("gpu"):
        return "the tasks ask for GPUs and this machine has none to measure a burst on; finished records give one"
    return None


def layout(cells: list, seconds: dict, workers: int) -> float:
    """When the last of ``cells`` ends, ``workers`` at a time: each free worker takes the first
    network of the plan (bases first) whose base has ended, as run_cells does. ``seconds``:
    key -> wall time (0 for networks already done or without an estimate)."""
    import heapq

    from ..executors.worker import _with_bases

    order = _with_bases(list(cells))
    planned = {c.key for c in order}

    def needs(c) -> str | None:
        dep = c.base_dependency
        return dep.key if dep is not None and dep.key in planned else None

    end: dict[str, float] = {}
    free = [0.0] * max(1, workers)
    waiting = list(order)
    while waiting:
        t = heapq.heappop(free)
        ready = next((c for c in waiting if needs(c) is None or end.get(needs(c), math.inf) <= t), None)
        if ready is None:  # every one left waits for a base in training: until the first of them ends
            t = min(end.get(needs(c), math.inf) for c in waiting)
            ready = next(c for c in waiting if end.get(needs(c), math.inf) <= t)
        waiting.remove(ready)
        end[ready.key] = t + float(seconds.get(ready.key) or 0.0)
        heapq.heappush(free, end[ready.key])
    return max(end.values(), default=0.0)


def estimate(ctx, cells: list, todo: list | None = None) -> SweepEstimate:
    """Every planned network's estimated wall time and the sweep's (``todo``: the networks still
    to train; by default those without a finished record)."""
    t0 = time.perf_counter()
    cfg, store, device = ctx.cfg, ctx.store, ctx.device
    todo_keys = {c.key for c in (todo if todo is not None else [c for c in cells if not store.is_done(c.key)])}
    sizes: dict = {}
    works = {c.key: work_of(ctx, c, sizes) for c in cells}
    recorded = from_records(store, int(cfg.train.epochs))
    not_here = represented(cfg, device)
    networks, used = [], set()  # used: the keys of the records used
    need: dict[tuple, Work] = {}  # the shapes to measure, in the plan's order
    top_n = max((c.n for c in cells if c.probe), default=0)
    for c in cells:
        w = works[c.key]
        kind = (w.frozen, w.probe, w.task.classes, w.task.val)
        done = c.key not in todo_keys
        own = record_seconds(store.read_record(c.key) or {}, int(cfg.train.epochs)) if done else None
        if own is not None:  # finished: what it took
            networks.append(Network(c, own, "records", done, 1))
            used.add(c.key)
        elif kind in recorded:
            seen = recorded[kind]
            networks.append(Network(c, statistics.median(seen.values()), "records", done, len(seen)))
            used.update(seen)
        else:
            networks.append(Network(c, None, "none", done))
            if not not_here:
                need.setdefault(w.shape, w)
                if w.probe and cfg.launcher.name != "slurm":  # the shared pass: units 1..top
                    top = Work(0, max(c.n, top_n), w.task)
                    need.setdefault(top.shape, top)

    # Rounds over the shapes, each part at its faster round, within the budget (a second round
    # only where the first was quick).
    bursts: dict[tuple, Burst] = {}
    rate = 0.0
    for round_ in range(ROUNDS):
        if round_ and sum(b.took for b in bursts.values()) > SECOND_ROUND_S:
            break
        for shape, w in need.items():
            if sum(b.took for b in bursts.values()) >= BURST_BUDGET_S:
                break
            b = burst(cfg, device, w, cache_applies(cfg, w.task), Path(store.root))
            bursts[shape] = _faster(bursts[shape], b) if shape in bursts else b
    if any(w.probe for w in need.values()) and bursts:
        import torch

        from ..train import set_threads

        threads = torch.get_num_threads()
        try:
            set_threads(cfg.train, device)  # the probes' matmul rate on the networks' threads
            rate = matmul_rate(device)
        finally:
            torch.set_num_threads(threads)

    def measured(w: Work) -> Burst | None:  # or a measured shape that does at least as much work
        return bursts.get(w.shape) or bursts.get(_nearest(bursts, w.shape))

    sources: set = set()
    for n in networks:
        if n.basis != "none":
            continue
        c, w = n.cell, works[n.cell.key]
        b = measured(w) if not not_here else None
        if b is None:
            continue
        forward = None  # Slurm: every probe's task computes its own features
        if w.probe and cfg.launcher.name != "slurm":  # in a process, a source's first probe computes
            source = (c.source, c.target, c.split_seed, c.seed)  # units 1..top for the others (estimates.py)
            top = measured(Work(0, max(c.n, top_n), w.task))
            forward = 0.0 if source in sources or top is None else (w.task.train + w.task.val) * top.prefix_image
            sources.add(source)
        n.seconds, n.basis = burst_seconds(cfg, w, b, rate, forward), "burst"

    files = not all(in_memory(cfg, s) for s in sizes.values())
    workers = at_a_time(cfg, device, files)
    factor, load = contention(cfg, device, workers) if bursts else (1.0, "")
    for n in networks:
        if n.basis == "burst":
            n.seconds *= factor
    seconds = {n.cell.key: (0.0 if n.done else n.seconds) for n in networks}
    if cfg.launcher.name == "slurm":
        bases = [c for c in cells if c.treatment == "base"]
        rest = [c for c in cells if c.treatment != "base"]
        total = layout(bases, seconds, workers) + layout(rest, seconds, workers)
    else:
        total = layout(cells, seconds, workers)
    unmeasured = not_here or f"the burst budget of {BURST_BUDGET_S:.0f} s ran out"
    return SweepEstimate(networks, total, workers, device.type, cfg.launcher.name, len(bursts),
                         sum(b.took for b in bursts.values()), len(used), load, time.perf_counter() - t0,
                         unmeasured)


# ---------------------------------------------------------------------------------------------
# What the sweep says


def suggest_timeout(seconds: float, signal_delay_s: int) -> int:
    """A timeout_min with room: 1.5x the estimate plus the signal delay, rounded up to 10 minutes."""
    minutes = (1.5 * seconds + signal_delay_s) / 60
    return int(math.ceil(minutes / 10) * 10)


def timeout_warning(est: SweepEstimate, lc) -> str | None:
    """launcher=slurm: the warning when the longest network's estimate exceeds
    launcher.timeout_min (None when every estimate fits)."""
    longest = est.longest()
    limit = int(lc.timeout_min) * 60
    if longest is None or longest.seconds <= limit:
        return None
    over = [n for n in est.todo if n.seconds is not None and n.seconds > limit]
    delay, requeues = int(lc.get("signal_delay_s", 0) or 0), int(lc.get("max_num_timeout", 0) or 0)
    needed = math.ceil(longest.seconds / max(60.0, limit - delay)) - 1
    basis = (f"from {longest.records} finished record(s) of its kind" if longest.basis == "records" else
             f"from a burst measured on this machine's {est.device}, which may not represent the compute nodes; "
             f"finished records are better: run the dry run again once some networks are done")
    fate = (f"Slurm signals its task {delay} s before the limit; it checkpoints, is requeued and resumes from its "
            f"last epoch's checkpoint, up to launcher.max_num_timeout={requeues} time(s)")
    fate += (f" (about {needed} requeue(s) needed, each queued again)" if needed <= requeues else
             f"; it needs about {needed}, so it would end unfinished")
    return (f"launcher.timeout_min={lc.timeout_min} is shorter than the estimate of {len(over)} network(s): the "
            f"longest, {longest.cell.name} ({longest.cell.key}), {duration(longest.seconds)} ({basis}). {fate}. "
            f"launcher.timeout_min={suggest_timeout(longest.seconds, delay)} would let each finish in one go")


def warn_timeout(ctx, cells: list, lc) -> SweepEstimate | None:
    """launcher=slurm at submission: log the timeout warning if a network's estimate exceeds
    launcher.timeout_min. Never raises: an estimate that fails is logged at debug level."""
    try:
        est = estimate(ctx, cells, cells)
        text = timeout_warning(est, lc)
        if text:
            log.warning(f"warning: {text}")
        return est
    except Exception as e:  # noqa: BLE001  an estimate never stops a submission
        log.debug(f"no time estimate ({type(e).__name__}: {e})")
        return None


def report(ctx, cells: list) -> SweepEstimate | None:
    """The dry run's estimate: every network's time and the sweep's, and with launcher=slurm the
    timeout warning. Never raises: an estimate that fails is logged at debug level."""
    try:
        est = estimate(ctx, cells)
        for line in est.lines():
            log.info(line)
        if ctx.cfg.launcher.name == "slurm":
            text = timeout_warning(est, ctx.cfg.launcher)
            if text:
                log.warning(f"warning: {text}")
        log.debug(f"the estimate took {est.took:.1f} s")
        return est
    except Exception as e:  # noqa: BLE001  an estimate never stops a dry run
        log.debug(f"no time estimate ({type(e).__name__}: {e})")
        return None

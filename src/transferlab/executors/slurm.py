"""``launcher=slurm``: Slurm job arrays through submitit: one array for the base networks, then
one for the cells, which starts once the bases' array has ended (``--dependency=afterany``);
one network per array task."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from .. import eta
from ..cells import Cell
from ..config import ConfigError
from ..store import atomic_write_json, timestamp
from .base import Executor, LaunchError
from .progress import wait
from .worker import Worker, worker_config
from ..log import get

log = get(__name__)

# The launcher keys passed to submitit's SlurmExecutor (hydra-submitit-launcher's names and units).
SLURM_KEYS = ("partition", "account", "qos", "constraint", "exclude", "comment", "gres", "gpus_per_node",
              "gpus_per_task", "cpus_per_task", "cpus_per_gpu", "mem_gb", "mem_per_gpu", "timeout_min",
              "array_parallelism", "signal_delay_s", "setup", "additional_parameters")

# A Slurm memory size: a whole number and a unit (a bare number is megabytes to Slurm).
SLURM_SIZE = re.compile(r"[1-9][0-9]*[KMGTkmgt][Bb]?")


def mem_string(gb: float) -> str:
    """``mem_gb`` as sbatch's --mem: 32 -> "32GB", 1.5 -> "1536MB" (rounded up, never 0, which
    would ask for all of a node's memory). A bare number would be megabytes to Slurm."""
    gb = float(gb)
    return f"{int(gb)}GB" if gb.is_integer() else f"{max(1, math.ceil(gb * 1024))}MB"


def slurm_parameters(lc) -> dict:
    """submitit SlurmExecutor parameters from the launcher config: null keys (and counts of 0
    GPUs) left out, so they are not passed to sbatch. Raises ConfigError, naming the key, for
    what the schema cannot see: a memory size without its unit, keys Slurm refuses together."""
    p = {k: lc.get(k) for k in SLURM_KEYS}
    for k in ("gpus_per_task", "gpus_per_node"):
        if p[k] == 0:
            p[k] = None
    mem_per_gpu = p["mem_per_gpu"]
    if mem_per_gpu is not None and not SLURM_SIZE.fullmatch(str(mem_per_gpu)):
        raise ConfigError(f"launcher.mem_per_gpu={mem_per_gpu!r} is not valid; expected a whole size with its "
                          f"unit (K, M, G, T), e.g. 16G, or null (Slurm reads a bare number as megabytes)")
    gres_gpus = "gres" if p["gres"] is not None and str(p["gres"]).startswith("gpu") else None
    one_way = "ask for GPUs with one of gres, gpus_per_node, gpus_per_task"
    for a, b, why in (("mem_gb", "mem_per_gpu", "sbatch refuses --mem with --mem-per-gpu"),
                      ("cpus_per_gpu", "cpus_per_task", "sbatch refuses --cpus-per-gpu with --cpus-per-task"),
                      (gres_gpus, "gpus_per_task", one_way), ("gpus_per_node", "gpus_per_task", one_way)):
        if a and p[a] is not None and p[b] is not None:
            raise ConfigError(f"launcher.{a}={p[a]} and launcher.{b}={p[b]} cannot both be set ({why}): "
                              f"set launcher.{a}=null or launcher.{b}=null")
    p["time"] = int(p.pop("timeout_min"))
    mem_gb = p.pop("mem_gb")
    p["mem"] = None if mem_gb is None else mem_string(mem_gb)
    p = {k: v for k, v in p.items() if v not in (None, "", [], {})}
    for k in ("setup", "additional_parameters"):
        if k in p:
            p[k] = OmegaConf.to_container(p[k]) if OmegaConf.is_config(p[k]) else p[k]
    return p


def slurm_executor(lc, folder: Path, job_name: str, dependency: str | None = None):
    """The submitit SlurmExecutor for the launcher config (what it writes to sbatch:
    ``ex._make_submission_file_text(command, uid)``)."""
    import submitit

    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(lc.max_num_timeout))
    # One task per array job, always: one network. Said explicitly, as hydra-submitit-launcher
    # does (tasks_per_node=1): Slurm 22.05 refuses --gpus-per-task with --cpus-per-task without it.
    ex.update_parameters(job_name=job_name, ntasks_per_node=1, **slurm_parameters(lc))
    if dependency:
        ex.update_parameters(dependency=dependency)
    return ex


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
        slurm_parameters(launcher)  # what the schema cannot check, before anything runs
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
            log.info(f"this sweep's jobs are still queued or running ({self.counts(active)}): "
                     f"not submitting again")
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
        wait(store, cells, lambda: self.counts(squeue_states(ids)), float(lc.poll_s), "Slurm task(s)")
        return run_id

    def submit(self, ctx, todo: list[Cell], run_id: str, folder: Path, history: list[dict]) -> None:
        """Submit the bases' array, then the cells' array depending on it; each is added to
        slurm/jobs.json as soon as Slurm has it (so a failure in between loses no job id)."""
        import submitit

        lc, sub = self.lc, history[-1]
        config = worker_config(ctx.cfg, ctx.store.root)
        bases = [c for c in todo if c.treatment == "base"]
        rest = [c for c in todo if c.treatment != "base"]
        eta.warn_timeout(ctx, todo, lc)  # a network estimated past timeout_min: a warning, never a stop
        dependency, name = None, ctx.store.root.name
        for what, group in (("bases", bases), ("cells", rest)):
            if not group:
                continue
            ex = slurm_executor(lc, folder, f"transferlab-{name}-{what}", dependency)
            try:
                jobs = ex.map_array(Worker(config, run_id), [[c.key] for c in group])
            except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as e:
                raise LaunchError(f"sbatch refused the {what}' array: {str(e).strip()}") from None
            array_id = jobs[0].job_id.split("_")[0]
            sub["job_ids"].append(array_id)
            sub["keys"][array_id] = [c.key for c in group]
            atomic_write_json(folder / "jobs.json", history)
            log.info(f"submitted {what}: job array {array_id} ({len(group)} task(s), "
                     f"{what} {'after ' + dependency if dependency else 'now'})")
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
        log.info("follow them with:\n"
                 f"  squeue -j {j}                 # queued / running tasks\n"
                 f"  sacct -j {j} -X               # states and exit codes (where accounting is on)\n"
                 f"  tail -f {folder}/{ids[-1]}_*_0_log.out   # a task's log (.err: its errors)\n"
                 "  rerun this same command      # progress; resubmits only what is unfinished once "
                 "these jobs are gone\n"
                 f"  scancel {' '.join(ids)}                  # stop them (finished networks are kept)")


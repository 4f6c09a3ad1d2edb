"""Executors: where the networks of a sweep are trained, behind one interface.

- ``local``           in this process, one after another                      (local.py)
- ``submitit_local``  N worker processes on this machine, one per GPU (or CPU workers sharing
                      the cores), started through submitit's LocalExecutor   (submitit_local.py)
- ``slurm``           Slurm job arrays through submitit: one array for the base networks, then
                      one for the cells, which starts once the bases' array has ended
                      (``--dependency=afterany``); one network per array task (slurm.py)

All of them run the same loop, ``run_cells`` (worker.py), which trains each network through
runner.run_cell while holding that network's lock (store.lock); what to do with a network is
decided from the records alone by ``next_step``. A worker that finds a network
locked by another goes on with the others and comes back to it, so concurrent workers (or two
sweeps started at once on one folder) never train a network twice. The records on disk are the
truth: progress and the final summary are read from them, whoever wrote them (progress.py).

Crash safety comes from the runner's per-epoch checkpoints: a worker killed mid-cell, or a Slurm
task preempted (submitit catches SIGUSR2, calls ``Worker.checkpoint`` and requeues the task),
resumes every unfinished network from its last checkpoint when it runs again.
"""
from __future__ import annotations

import shutil

from ..config import ConfigError
from ..schema import check_group
from .base import Executor, LaunchError, new_run_id
from .local import InProcess, StillRunning, cpu_cores, local_workers
from .progress import progress, summarize
from .slurm import SLURM_KEYS, SlurmArrays, slurm_parameters, squeue_states
from .submitit_local import LocalWorkers
from .worker import Decision, Once, Step, Worker, next_step, run_cells, worker_config

__all__ = ["SLURM_KEYS", "Decision", "Executor", "InProcess", "LaunchError", "LocalWorkers",
           "Once", "SlurmArrays", "Step", "StillRunning", "Worker", "cpu_cores", "local_workers", "make_executor",
           "new_run_id", "next_step", "progress", "run_cells", "slurm_parameters", "squeue_states",
           "summarize", "worker_config"]


def make_executor(cfg) -> Executor:
    """The executor that ``launcher=...`` names; checks what it needs before any training."""
    lc = cfg.launcher
    check_group("launcher", lc)  # workers, timeouts: the schema's bounds
    if lc.name == "local":
        return InProcess()
    if lc.name in ("submitit_local", "slurm"):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"launcher={lc.name} needs submitit: pip install 'transferlab[slurm]'") from None
    if lc.name == "submitit_local":
        return LocalWorkers(lc)
    if lc.name == "slurm":
        missing = [t for t in ("sbatch", "squeue", "srun") if shutil.which(t) is None]
        if missing:
            raise ConfigError(f"launcher=slurm needs Slurm's {', '.join(missing)} on PATH; run the sweep "
                              f"on a machine that submits to the cluster (a login node)")
        return SlurmArrays(lc)
    raise ConfigError(f"launcher.name={lc.name!r} is not valid; allowed: local, submitit_local, slurm")

"""``launcher=submitit_local``: N worker processes on this machine through submitit's LocalExecutor."""
from __future__ import annotations

import os

from .base import Executor
from .progress import wait
from .worker import Worker, worker_config
from ..log import get

log = get(__name__)


def _visible_gpus() -> list[str]:
    """This process's GPUs, named as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    import torch

    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in env.split(",") if d.strip()] if env else [str(i) for i in range(n)]
    return names[:n]


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
        log.info(f"{workers} local worker(s) ({where}); their logs: {folder}/<pid>_0_log.out")
        try:
            wait(store, cells, lambda: sum(not j.done() for j in jobs), float(lc.poll_s), "worker(s) running")
        except KeyboardInterrupt:
            for j in jobs:
                j.cancel()
            raise
        for i, j in enumerate(jobs):
            try:
                j.result()
            except Exception as e:  # a worker that died: its networks resume on the next run
                log.warning(f"worker {i} ended abnormally ({str(e).strip().splitlines()[-1]}); log: {j.paths.stdout}")
        return run_id

"""``launcher=local``: the networks trained in this process, one or more at once (threads)."""
from __future__ import annotations

import threading

from ..machine import cpu_cores
from .base import Executor
from .worker import Once, run_cells


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
        from ..data import FileSet
        from ..train import Interrupted, set_threads

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

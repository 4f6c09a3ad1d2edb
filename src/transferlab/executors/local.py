"""``launcher=local``: the networks trained in this process, one or more at once (threads)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ..machine import cpu_cores
from .base import Executor
from .worker import Once, run_cells
from ..log import get

log = get(__name__)


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


# After a Ctrl-C, how long the networks in progress get to reach the end of their current step
# (an evaluation, a checkpoint, a feature cache or a probe may come first) before the sweep
# quits without them; each resumes from its last epoch's checkpoint, as after a kill.
STOP_WAIT_S = 60.0


class StillRunning(KeyboardInterrupt):
    """Ctrl-C, and worker threads are left running, inside torch ops (a second Ctrl-C, or networks
    that did not stop within STOP_WAIT_S). The process must end with os._exit: an interpreter
    that shuts down around such a thread aborts ("terminate called without an active
    exception", SIGABRT) when the thread, back from a torch op, takes the GIL to find Python
    finalizing."""


def _say_err(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, RuntimeError):  # a closed stream, or stderr in use by the interrupted code
        pass


def _quit_now(signum=None, frame=None) -> None:
    """Exit 130 at once, without the interpreter's shutdown (threads may still be in torch ops)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, RuntimeError, ValueError):
            pass
    os._exit(130)


class _CtrlC:
    """Ctrl-C (SIGINT) while this process trains, in place of Python's KeyboardInterrupt at
    whatever line the main thread is on. The first sets ``stop``: every network in progress stops
    after its current step (train.Interrupted; the last epoch's checkpoint stays) and the worker
    threads end; a second one quits at once (KeyboardInterrupt, or StillRunning once threads run).

    Not a KeyboardInterrupt in the main thread while it waits for the workers: one raised inside
    Thread.join marks the thread being joined as ended though it still runs (CPython gh-90882:
    3.11's _wait_for_tstate_lock releases the lock the live thread holds), so the sweep returned,
    and the interpreter shut down, around a thread inside a torch op: SIGABRT.

    Installed only in the main thread and over Python's own handler: a SIGINT that is ignored (a
    background job) stays ignored, and someone else's handler stays theirs."""

    def __init__(self, stop: threading.Event):
        self.stop, self.pressed_at, self.threads_running = stop, None, False
        self._previous = None

    @property
    def pressed(self) -> bool:
        return self.pressed_at is not None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind, exc, tb):
        if self._previous is not None:  # with threads left running, a further Ctrl-C quits at once
            signal.signal(signal.SIGINT, _quit_now if isinstance(exc, StillRunning) else self._previous)

    def _handle(self, signum, frame):
        if self.pressed_at is None:
            self.pressed_at = time.monotonic()
            self.stop.set()
            _say_err("\nstopping: each network in progress stops after its current step "
                     "(Ctrl-C again to quit at once)")
            return
        if self.threads_running:
            raise StillRunning
        raise KeyboardInterrupt


class InProcess(Executor):
    """In this process, ``local_workers`` networks at once, one per thread. Each network runs
    its ops on train.threads CPU threads, so its result does not depend on what trains beside
    it; the per-network locks share the plan out exactly as between worker processes.

    Ctrl-C asks every network in progress to stop after its current step (the checkpoints of the
    last epochs stay), waits for the worker threads to end (at most STOP_WAIT_S) and raises
    KeyboardInterrupt; a second Ctrl-C, or networks that do not stop in time, raise StillRunning
    at once (the caller must then end the process with os._exit)."""

    def run(self, ctx, cells, run_id):
        stop = threading.Event()
        with _CtrlC(stop) as ctrl_c:
            errors = self._train(ctx, cells, run_id, stop, ctrl_c)
        if ctrl_c.pressed:
            raise KeyboardInterrupt
        if errors:
            raise errors[0]
        return run_id

    def _train(self, ctx, cells, run_id, stop: threading.Event, ctrl_c: _CtrlC) -> list[BaseException]:
        """Train ``cells`` until done or ``stop``; the errors the worker threads raised."""
        from ..data import FileSet
        from ..train import Interrupted, set_threads

        workers = local_workers(ctx.cfg, ctx.device)
        if workers > 1:  # loads the images once, before the threads share them (with one worker, not at all here)
            workers = local_workers(ctx.cfg, ctx.device, files=isinstance(ctx.dataset.train, FileSet))
        set_threads(ctx.cfg.train, ctx.device)
        say = log.info
        if workers == 1:  # in this thread: a second Ctrl-C's KeyboardInterrupt unwinds it
            try:
                run_cells(ctx, cells, run_id, say=say, should_stop=stop.is_set)
            except Interrupted:
                pass
            return []
        errors, once = [], Once()
        ended = threading.Semaphore(0)  # released by each worker as it ends

        def work():
            try:
                run_cells(ctx, cells, run_id, say=say, should_stop=stop.is_set, parallel=workers, once=once)
            except Interrupted:
                pass
            except BaseException as e:  # noqa: BLE001  re-raised in the main thread
                errors.append(e)
                stop.set()
            finally:
                ended.release()

        threads = [threading.Thread(target=work, name=f"transferlab-worker-{i}", daemon=True) for i in range(workers)]
        say(f"{workers} networks at a time in this process, {ctx.cfg.train.threads} CPU thread(s) each")
        ctrl_c.threads_running = True
        try:
            for t in threads:
                t.start()
            running = len(threads)
            while running:
                if ended.acquire(timeout=0.2):  # a timeout, so a Ctrl-C's handler runs in this thread
                    running -= 1
                elif ctrl_c.pressed and time.monotonic() - ctrl_c.pressed_at > STOP_WAIT_S:
                    _say_err(f"{running} worker(s) still busy {STOP_WAIT_S:.0f}s after Ctrl-C: quitting without "
                             f"them (their networks resume from their last checkpoints)")
                    raise StillRunning
            for t in threads:  # each has released `ended`: only its thread's own end is left
                t.join()
            ctrl_c.threads_running = False
        except StillRunning:
            stop.set()
            raise
        except KeyboardInterrupt:  # not through _CtrlC (someone else's SIGINT handler): quit at once
            stop.set()
            raise StillRunning from None
        return errors

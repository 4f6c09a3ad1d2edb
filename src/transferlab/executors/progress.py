"""Progress and summary, read from the records on disk (whoever wrote them)."""
from __future__ import annotations

import subprocess
import time

from ..cells import Cell
from ..store import SweepStore
from ..log import get

log = get(__name__)


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


def wait(store: SweepStore, cells: list[Cell], still_running, poll_s: float, what: str) -> None:
    """Print progress from the records whenever it changes, until ``still_running()`` is empty."""
    last = None
    while True:
        try:
            running = still_running()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # a scheduler hiccup
            log.warning(f"warning: {e}; retrying in {poll_s:.0f}s")
            time.sleep(poll_s)
            continue
        done, failed = progress(store, cells)
        line = f"progress: {done}/{len(cells)} networks finished, {failed} failed; {running or 'no'} {what}"
        if line != last:
            log.info(line)
            last = line
        if not running:
            return
        time.sleep(poll_s)

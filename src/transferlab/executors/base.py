"""What every executor shares: the interface, the launch error and the run id.

Its own module, below the backends, so that they import it without importing the package.
"""
from __future__ import annotations

import time
import uuid

from ..cells import Cell


class LaunchError(RuntimeError):
    """The scheduler refused or could not be reached (sbatch, squeue); nothing was trained."""


def new_run_id() -> str:
    """Names one invocation of the sweep; records carry it, so a summary can tell what this run
    trained from what an earlier one did, and a network fails at most once per run."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


class Executor:
    """Trains the networks of a sweep somewhere. ``run`` returns the id of the run whose work
    it saw to the end (``run_id``, or the earlier submission it waited for), so the summary can
    tell what that run trained; None when it submitted jobs that are still running."""

    def run(self, ctx, cells: list[Cell], run_id: str) -> str | None:
        raise NotImplementedError

"""``handle``: the sweep's command line, dealt with here (--help, --cfg, an error, -m's sweeps)
or handed back as the overrides of one sweep."""
from __future__ import annotations

from typing import Callable

from ..config import AXIS_KEYS, ConfigError
from ..log import get
from .cfg import cfg_text
from .flags import Args, map_hydra_keys, parse_flags
from .help import general_help, group_help
from .multirun import Job, _check_jobs, expand, name_jobs, run_all
from .output import emit

log = get(__name__)


def _show(texts: list[str]) -> int:
    return 0 if all(emit(t) for t in texts) else 1


def _plan(argv: list[str]) -> tuple[Args, list[Job]]:
    args = parse_flags(argv)
    overrides = map_hydra_keys(args.overrides)
    jobs = expand(overrides, args.multirun)
    if jobs[0].chosen:
        name_jobs(jobs, overrides)
    return args, jobs


def handle(argv: list[str], run_one: Callable[[list[str]], int], doc: str = "") -> int | list[str]:
    """The command line of a sweep: an exit status when it is dealt with here (--help, --cfg,
    an error, -m's sweeps, each through ``run_one``), else the overrides of the one sweep."""
    try:
        args, jobs = _plan(argv)
        if args.help is not None:
            overrides = jobs[0].overrides
            return _show([group_help(args.help, overrides) if args.help else general_help(doc, overrides)])
        if args.cfg is not None:
            many = len(jobs) > 1
            return _show([(f"# sweep {k} of {len(jobs)}: {' '.join(j.chosen)}\n" if many else "")
                          + cfg_text(args, j.overrides) for k, j in enumerate(jobs, 1)])
        if not jobs[0].chosen:
            if args.multirun:
                log.info(f"-m: {', '.join(AXIS_KEYS)} are the axes of one sweep already and nothing else is "
                         "swept: running one sweep")
            return jobs[0].overrides
        _check_jobs(jobs)
    except ConfigError as e:
        log.error(f"error: {e}")
        return 2
    return run_all(jobs, run_one)

"""-m: one sweep per combination of comma-separated values (Hydra's basic sweeper), each
checked before the first trains and run one after another."""
from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from typing import Callable, NoReturn

from ..config import (AXIS_KEYS, GROUPS, PATH_KEYS, ConfigError, _quoted, compose, group_options,
                      results_root, sweep_name, validate)
from ..log import RESULT, get
from .flags import _key

log = get(__name__)


@dataclass
class Job:
    overrides: list[str]
    chosen: list[str] = field(default_factory=list)  # key=value of the swept keys


class _GroupOptions:
    """What Hydra's glob() asks of a config loader: a group's options."""

    def get_group_options(self, group: str, results_filter=None) -> list[str]:
        return group_options(group)


@functools.cache
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _parsed(override: str):
    """Hydra's reading of an override, or None where ours rules (axes, paths) or Hydra's
    grammar fails (compose() then reports it in its words)."""
    key = _key(override)
    if "=" not in override or key in AXIS_KEYS or key in PATH_KEYS:
        return None
    try:
        o = _parser().parse_override(override)
    except Exception:  # noqa: BLE001  any grammar error: compose() says what is wrong
        return None
    o.config_loader = _GroupOptions()
    return o


def _values(o) -> list[str]:
    """A sweep override's values, as Hydra's basic sweeper lists them."""
    if not o.is_discrete_sweep():
        raise ConfigError(f"{o.input_line}: interval() needs a sampling sweeper (Optuna, Ax); give the values "
                          "as a,b,c, range(start,stop[,step]) or choice(a,b)")
    values = list(o.sweep_string_iterator())
    if not values:
        raise ConfigError(f"{o.input_line} gives no value"
                          + (f"; options of {o.key_or_group}: {', '.join(group_options(o.key_or_group))}"
                             if o.key_or_group in GROUPS else ""))
    return values


def _not_multirun(override: str, key: str) -> NoReturn:
    what = "option" if key in GROUPS else "value"
    raise ConfigError(f"{override}: several values for {key}; add -m (--multirun) to run one sweep per {what}"
                      + ("" if key in GROUPS else f", or write a list as {key}=[...] or one string as {key}='...'")
                      + f" (without -m only {', '.join(AXIS_KEYS)} take several values: the sweep's own grid)")


def expand(overrides: list[str], multirun: bool) -> list[Job]:
    """The sweeps a command line asks for: one, or with -m one per combination of the swept
    values (Hydra's basic sweeper: the cartesian product, in the order given)."""
    axes: list[list[tuple[int, str]]] = []
    for i, ov in enumerate(overrides):
        o = _parsed(ov)
        if o is None or not o.is_sweep_override():
            continue
        if not multirun:
            _not_multirun(ov, o.key_or_group)
        axes.append([(i, f"{o.get_key_element()}={v}") for v in _values(o)])
    jobs = []
    for combo in itertools.product(*axes):
        job = list(overrides)
        for i, chosen in combo:
            job[i] = chosen
        jobs.append(Job(job, [chosen for _, chosen in combo]))
    return jobs


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text.lstrip("+~"))


def name_jobs(jobs: list[Job], overrides: list[str]) -> None:
    """Each swept sweep its own folder: the name (default <data>-<split>, or the name= given)
    with -key=value of what it sweeps; a name= with an interpolation is the user's own scheme."""
    if any(_key(ov) == "name" and "${" in ov for ov in overrides):
        return
    for job in jobs:
        suffix = "-".join(_safe(c) for c in job.chosen if _key(c) != "name")
        if suffix:
            try:
                base = sweep_name(compose(job.overrides))
            except ConfigError:
                continue  # _check_jobs says which sweep and why
            job.overrides = [ov for ov in job.overrides if _key(ov) != "name"] + [f"name={_quoted(f'{base}-{suffix}')}"]


def _check_jobs(jobs: list[Job]) -> None:
    """Every sweep's config before the first one trains: a typo in the last one must not wait
    for hours; two sweeps never share a folder."""
    folders: dict = {}
    for k, job in enumerate(jobs, 1):
        try:
            cfg = compose(job.overrides)
            validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"sweep {k} of {len(jobs)} ({' '.join(job.chosen)}): {e}") from None
        folder = results_root(cfg)
        if folder in folders:
            raise ConfigError(f"sweeps {folders[folder]} and {k} would share the folder {folder}; give name= "
                              "an interpolation of what is swept, e.g. name=lr${train.lr}, or leave name out")
        folders[folder] = k


def run_all(jobs: list[Job], run_one: Callable[[list[str]], int]) -> int:
    """One sweep after another, each with its own output; the worst exit status. Ctrl-C (130)
    stops the rest."""
    statuses = []
    for k, job in enumerate(jobs, 1):
        log.info(f"multirun: sweep {k} of {len(jobs)}: {' '.join(job.chosen)}")
        statuses.append(run_one(job.overrides))
        if statuses[-1] == 130:
            break
    log.log(RESULT, f"multirun: {len(jobs)} sweep(s): " + ", ".join(
        f"{' '.join(job.chosen)} {_status_word(rc)}" for job, rc in itertools.zip_longest(jobs, statuses)))
    return max(statuses)


def _status_word(rc: int | None) -> str:
    return {None: "not started", 0: "ok", 1: "with failed networks", 2: "refused", 130: "interrupted"}.get(
        rc, f"exit {rc}")

"""The sweep's flags in Hydra's spellings (parse_flags) and Hydra's hydra.* keys mapped onto
transferlab's (map_hydra_keys)."""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..config import GROUPS, ConfigError, _quoted

PROG = "python -m transferlab.sweep"
USAGE = (f"usage: {PROG} [-h [GROUP[=OPTION]]] [--cfg [job|all] [--resolve] [-p KEY]] [-m]\n"
         f"       {' ' * len(PROG)} [group=option ...] [key=value ...]")
FLAGS = {"-h": "help", "--help": "help", "--cfg": "cfg", "-c": "cfg", "--resolve": "resolve",
         "-p": "package", "--package": "package", "-m": "multirun", "--multirun": "multirun"}
ALLOWED_FLAGS = "-h/--help [GROUP[=OPTION]], --cfg/-c [job|all], --resolve, -p/--package KEY, -m/--multirun"
CFG_KINDS = ("job", "all")
TOPICS = (*GROUPS, "probe")  # what --help TOPIC lists; probe: a node of config.yaml, no group
# @hydra.main's own flags: refused with the reason rather than a bare "unknown".
HYDRA_ONLY = ("--info", "-i", "--hydra-help", "--version", "--config-path", "-cp", "--config-name", "-cn",
              "--config-dir", "-cd", "--shell-completion", "-sc", "--run", "-r", "--experimental-rerun")
HYDRA_KEYS = {"hydra.run.dir": ("DIR", "the sweep folder, exactly: sets results_dir and name"),
              "hydra.sweep.dir": ("DIR", "as hydra.run.dir; with -m each sweep's folder gets a -key=value suffix"),
              "hydra.job.name": ("NAME", "name=NAME"), "hydra.verbose": ("true", "verbose=true|false")}
NO_HYDRA_CONFIG = ("transferlab composes its config with Hydra's compose API (no @hydra.main), so there is "
                   "no Hydra config of its own")


@dataclass
class Args:
    help: str | None = None     # None: no --help; "": the general help; else GROUP or GROUP=OPTION
    cfg: str | None = None      # None: no --cfg; else job or all
    resolve: bool = False
    package: str | None = None
    multirun: bool = False
    overrides: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ flags

def _unknown_flag(token: str) -> NoReturn:
    flag = token.partition("=")[0]
    close = difflib.get_close_matches(flag, list(FLAGS), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    why = f" ({flag} is a flag of @hydra.main apps; {NO_HYDRA_CONFIG})" if flag in HYDRA_ONLY else ""
    raise ConfigError(f"unknown flag {token!r}{hint}{why}; allowed: {ALLOWED_FLAGS}, then overrides "
                      f"(group=option, key=value)")


def _is_word(token: str) -> bool:
    """A flag's value rather than an override: overrides hold '=' (or start with ~ or +)."""
    return bool(token) and "=" not in token and not token.startswith(("-", "~", "+"))


def _help_topic(token: str) -> bool:
    group, eq, _ = token.partition("=")
    return _is_word(token) or (bool(eq) and group in GROUPS)


def _hydra_keys_text() -> str:
    return "; ".join(f"{k}={arg} ({words})" for k, (arg, words) in HYDRA_KEYS.items())


def _check_cfg_kind(kind: str) -> str:
    if kind == "hydra":
        raise ConfigError(f"--cfg hydra: {NO_HYDRA_CONFIG}. The hydra.* keys taken map onto transferlab's: "
                          + _hydra_keys_text() + f". Allowed: --cfg {'|'.join(CFG_KINDS)}")
    if kind not in CFG_KINDS:
        raise ConfigError(f"--cfg {kind!r} is not valid; allowed: job (the composed config, the default), "
                          "all (resolved, plus what the run derives)")
    return kind


def parse_flags(argv: list[str]) -> Args:
    """Flags anywhere on the line, in Hydra's spellings; everything else is an override."""
    a, tokens = Args(), list(argv)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("-"):  # an override never starts with '-'
            a.overrides.append(token)
            continue
        flag, eq, value = token.partition("=")
        name = FLAGS.get(flag) or _unknown_flag(token)
        if name in ("resolve", "multirun"):
            if eq:
                raise ConfigError(f"{flag} takes no value (got {token!r})")
            setattr(a, name, True)
            continue
        takes = _help_topic if name == "help" else _is_word
        if not eq and tokens and takes(tokens[0]):
            value = tokens.pop(0)
        if name == "help":
            a.help = value
            if "=" in value:  # --help train=cifar: that option is chosen, too
                a.overrides.append(value)
        elif name == "cfg":
            a.cfg = _check_cfg_kind(value or "job")
        elif not value:
            raise ConfigError(f"{flag} needs a config key, e.g. {flag} train or {flag} train.lr")
        else:
            a.package = value
    if (a.resolve or a.package) and a.cfg is None:
        raise ConfigError("--resolve and -p/--package go with --cfg, e.g. --cfg job --resolve -p train")
    return a


# ------------------------------------------------------------------------------- hydra.* keys

def _folder(key: str, value: str) -> list[str]:
    """hydra.run.dir=X: results_dir and name such that config.results_root is X."""
    path = Path(os.path.expanduser(value.strip("'\"")))
    if not value or path.name in ("", ".", ".."):
        raise ConfigError(f"{key}={value!r} needs a folder path ending in the sweep's own folder, "
                          "e.g. results/my-sweep")
    return [f"results_dir={path.parent}", f"name={_quoted(path.name)}"]


def _hydra_key(override: str) -> list[str]:
    key, eq, value = override.partition("=")
    bare = key.lstrip("+~")
    if bare not in HYDRA_KEYS or not eq or key != bare:
        raise ConfigError(f"{override!r} is not taken: {NO_HYDRA_CONFIG}. The hydra.* keys taken: "
                          + _hydra_keys_text())
    if bare in ("hydra.run.dir", "hydra.sweep.dir"):
        return _folder(bare, value)
    if bare == "hydra.job.name":
        return [f"name={value}"]
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"hydra.verbose={value!r}: transferlab takes true or false (verbose=...); it has no "
                          "per-logger verbosity")
    return [f"verbose={value.lower()}"]


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def map_hydra_keys(overrides: list[str]) -> list[str]:
    """hydra.run.dir, hydra.sweep.dir, hydra.job.name and hydra.verbose as transferlab's keys;
    any other hydra.* (or hydra/group=option) is refused by name, never ignored."""
    out, set_by = [], {}
    for ov in overrides:
        if not re.match(r"[+~]*hydra[./]", ov):
            out.append(ov)
            continue
        for mapped in _hydra_key(ov):
            if _key(mapped) in set_by:
                raise ConfigError(f"{set_by[_key(mapped)]} and {ov} both set {_key(mapped)}: give one of them")
            set_by[_key(mapped)] = ov
            out.append(mapped)
    for ov in overrides:  # two ways of saying one thing: no silent "last one wins"
        if _key(ov) in set_by:
            raise ConfigError(f"{set_by[_key(ov)]} sets {_key(ov)}, and so does {ov}: give one of them")
    return out

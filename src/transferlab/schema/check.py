"""Checking a composed config against the schema: unknown keys with a did-you-mean, types,
choices and bounds, each message naming the key and what is allowed."""
from __future__ import annotations

import difflib
import operator
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

from .groups import FIXED_SCHEMAS, GROUP_SCHEMAS, Root


class ConfigError(ValueError):
    """A bad value in the config or on the command line, found before any training."""


def _shown(allowed) -> str:
    return ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)


def _type_ok(value, tp) -> tuple[bool, str]:
    """Whether ``value`` has type ``tp``, and the words for that type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, "anything"
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        ok, words = _type_ok(value, inner)
        return value is None or ok, f"{words} or null"
    if origin in (list, List):
        ok = isinstance(value, list) and all(_type_ok(v, args[0])[0] for v in value)
        return ok, f"a list of {_type_ok(None, args[0])[1].removeprefix('an ').removeprefix('a ')}s"
    if origin in (dict, Dict):
        return isinstance(value, dict), "a mapping"
    if tp is bool:
        return isinstance(value, bool), "true or false"
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if tp is str:  # Hydra reads data.root=2024 as an int: any scalar is a string here
        return isinstance(value, (str, int, float)) and not isinstance(value, bool), "a string"
    raise TypeError(f"no check for the type {tp!r}")


def known_keys(schema=Root, prefix: str = "") -> list[str]:
    """Every key path of a schema and of every group option's schema."""
    out = []
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        path = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            out += known_keys(hints[f.name], f"{path}.")
        elif schema is Root and f.name in GROUP_SCHEMAS:
            for s in {*GROUP_SCHEMAS[f.name].values()}:
                out += known_keys(s, f"{path}.")
        elif schema is Root and f.name in FIXED_SCHEMAS:
            out += known_keys(FIXED_SCHEMAS[f.name], f"{path}.")
        else:
            out.append(path)
    return sorted(set(out))


def did_you_mean(key: str) -> str:
    """" (did you mean train.epochs?)" for a key close to a known one, else ""."""
    keys = known_keys()
    by_last = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    last = [k.rsplit(".", 1)[-1] for k in keys]
    close = by_last or difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or \
        [k for k, tail in zip(keys, last) if tail in difflib.get_close_matches(key.rsplit(".", 1)[-1], last, n=1)]
    return f" (did you mean {' or '.join(close[:3])}?)" if close else ""


def not_a_key(path: str) -> str:
    """Why ``path`` is refused: a key of other options of its group (model.dropout with
    model=resnet18), or no key at all, with a did-you-mean."""
    group = path.split(".", 1)[0]
    owners = [name for name, s in GROUP_SCHEMAS.get(group, {}).items() if path in known_keys(s, f"{group}.")]
    if owners:
        return f"{path} is not a key of the {group} chosen; only {group}={', '.join(owners)} have it"
    return f"{path} is not a config key{did_you_mean(path)}"


# A bound's words and its test.
BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt), "lt": ("<", operator.lt),
          "le": ("<=", operator.le)}


def _in_bounds(value, bounds: dict) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(v is None or BOUNDS[b][1](v, x) for v in values for b, x in bounds.items())


def _check_value(path: str, value, tp, meta) -> None:
    """Refuse ``value`` for the key ``path`` of type ``tp`` with its field's metadata."""
    allowed, bounds = meta.get("choices"), meta.get("bounds", {})
    if allowed is not None:
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ConfigError(f"{path}={value!r} is not valid; allowed: {_shown(allowed)}")
        return
    if meta.get("auto") and value == "auto":
        return
    ok, words = _type_ok(value, tp)
    if bounds:  # "an integer >= 1 or null", not "an integer or null >= 1"
        base, null = (words[:-8], " or null") if words.endswith(" or null") else (words, "")
        words = base + " " + " and ".join(f"{BOUNDS[b][0]} {x}" for b, x in bounds.items()) + null
    if meta.get("auto"):
        words = f"auto or {words}"
    if not ok or not _in_bounds(value, bounds):
        raise ConfigError(f"{path}={value!r} is not valid; expected {words}")


def _check_node(node: dict, schema, prefix: str) -> None:
    hints = typing.get_type_hints(schema)
    by_name = {f.name: f for f in fields(schema)}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if key not in by_name:
            raise ConfigError(not_a_key(path))
        tp = hints[key]
        if is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}={value!r} is not valid; expected a mapping of {', '.join(f.name for f in fields(tp))}")
            _check_node(value, tp, f"{path}.")
        else:
            _check_value(path, value, tp, by_name[key].metadata)


def check_group(group: str, node) -> None:
    """Check one group's node (or part of it: only the keys it holds) against its schema; for
    code that is handed a group's config directly (train(), the feature cache)."""
    if not isinstance(node, dict):
        node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    schema = FIXED_SCHEMAS.get(group) or GROUP_SCHEMAS.get(group, {}).get(node.get("name"))
    if schema is None:
        raise ConfigError(f"{group}.name={node.get('name')!r} is not valid; allowed: {', '.join(GROUP_SCHEMAS[group])}")
    _check_node(node, schema, f"{group}.")


def check(cfg: DictConfig) -> None:
    """Refuse unknown keys, wrong types and values outside their choices or bounds, naming the key."""
    c = OmegaConf.to_container(cfg, resolve=True)
    _check_node(c, Root, "")
    for group in (*GROUP_SCHEMAS, *FIXED_SCHEMAS):
        node = c.get(group)
        if not isinstance(node, dict):
            raise ConfigError(f"{group}={node!r} is not valid; choose an option of the {group} group")
        check_group(group, node)

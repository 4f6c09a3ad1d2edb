"""Class hierarchies: classes -> superclasses -> two groups, which the dissimilar split uses.

A hierarchy file (``data.hierarchy=path`` for ``data=imagefolder``) is YAML, JSON or CSV:

    # YAML / JSON: superclasses in order, each with its classes; optional groups, exactly two,
    # the first is task A of the dissimilar split, the second task B.
    superclasses:
      vehicles: [airplane, automobile, ship, truck]
      animals: [bird, cat, deer, dog, frog, horse]
    groups:
      man-made: [vehicles]
      natural: [animals]

    # CSV: a header, then one row per class; the group column is optional. Superclasses and
    # groups are ordered by first appearance (the first group is task A).
    class,superclass,group
    airplane,vehicles,man-made
    bird,animals,natural

Every class of the dataset must be in exactly one superclass, and (with groups) every
superclass in exactly one group; anything else is a ConfigError naming the offending names.
The packaged hierarchies (CIFAR-10, CIFAR-100) are files of this format under ``hierarchies/``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config import ConfigError


@dataclass(frozen=True)
class Hierarchy:
    superclasses: list[str]
    class_superclass: list[int]   # superclass index of every dataset class
    superclass_group: list[str]   # group of every superclass; empty without groups
    groups: tuple[str, ...]       # () or the two group names, task A first


def packaged(name: str) -> Path:
    """A file shipped with the package under ``transferlab/data/hierarchies``."""
    return Path(str(resources.files("transferlab.data") / "hierarchies" / name))


def _names(items, what: str, source: str) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, (str, int)) for i in items):
        raise ConfigError(f"{source}: {what} must be a list of names, got {items!r}")
    return [str(i) for i in items]


def few(names) -> str:
    names = list(names)
    return ", ".join(map(repr, names[:8])) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def from_mapping(data, classes: list[str], source: str) -> Hierarchy:
    """Build and check a hierarchy from ``{"superclasses": {...}, "groups": {...}}``."""
    if not isinstance(data, dict) or not isinstance(data.get("superclasses"), dict):
        raise ConfigError(f"{source}: expected a mapping with a 'superclasses' mapping "
                          f"(superclass -> list of classes) and optional 'groups'")
    unknown_keys = set(data) - {"superclasses", "groups"}
    if unknown_keys:
        raise ConfigError(f"{source}: unknown key(s) {few(sorted(unknown_keys))}; allowed: superclasses, groups")
    members = {str(s): _names(c, f"superclass {s!r}", source) for s, c in data["superclasses"].items()}
    groups = data.get("groups") or {}
    if not isinstance(groups, dict):
        raise ConfigError(f"{source}: 'groups' must map each of two group names to its superclasses")
    groups = {str(g): _names(s, f"group {g!r}", source) for g, s in groups.items()}
    return _check(members, groups, classes, source)


def _owners(members: dict[str, list[str]], known: list[str], item: str, owner: str, source: str) -> dict[str, str]:
    """Which owner (superclass, group) each known item (class, superclass) is in: every item in
    exactly one owner, every name one of the known items."""
    owner_of: dict[str, str] = {}
    known_set = set(known)
    owners = owner + ("es" if owner.endswith("s") else "s")
    for o, items in members.items():
        unknown = [i for i in items if i not in known_set]
        if unknown:
            raise ConfigError(f"{source}: {owner} {o!r} names unknown {item}(es) {few(unknown)}; "
                              f"the {item}es are {few(known)}")
        for i in items:
            if i in owner_of:
                raise ConfigError(f"{source}: {item} {i!r} is in two {owners}, {owner_of[i]!r} and {o!r}")
            owner_of[i] = o
    missing = [i for i in known if i not in owner_of]
    if missing:
        raise ConfigError(f"{source}: {item}(es) {few(missing)} are in no {owner}; every {item} must be in one")
    return owner_of


def _check(members: dict[str, list[str]], groups: dict[str, list[str]], classes: list[str],
           source: str) -> Hierarchy:
    supers = list(members)
    owner = _owners(members, classes, "class", "superclass", source)
    class_superclass = [supers.index(owner[c]) for c in classes]
    if not groups:
        return Hierarchy(supers, class_superclass, [], ())
    if len(groups) != 2:
        raise ConfigError(f"{source}: 'groups' must have exactly two groups (task A, then task B), "
                          f"got {len(groups)}: {few(groups)}")
    group_of = _owners(groups, supers, "superclass", "group", source)
    return Hierarchy(supers, class_superclass, [group_of[s] for s in supers], tuple(groups))


def _read_csv(path: Path, classes: list[str]) -> Hierarchy:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(x.strip() for x in r)]
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if header[:2] != ["class", "superclass"] or header[2:] not in ([], ["group"]):
        raise ConfigError(f"{path}: the first line must be the header 'class,superclass' or "
                          f"'class,superclass,group', got {','.join(header)!r}")
    members: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    group_of: dict[str, str] = {}
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise ConfigError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
        c, s = row[0].strip(), row[1].strip()
        members.setdefault(s, []).append(c)
        if len(header) == 3:
            g = row[2].strip()
            if group_of.setdefault(s, g) != g:
                raise ConfigError(f"{path}:{lineno}: superclass {s!r} is in group {group_of[s]!r} "
                                  f"above and in {g!r} here")
            if s not in groups.setdefault(g, []):
                groups[g].append(s)
    return _check(members, groups, classes, str(path))


def load(path, classes: list[str]) -> Hierarchy:
    """Read a hierarchy file (.yaml, .yml, .json or .csv) and check it against ``classes``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"hierarchy file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, classes)
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"hierarchy file {path}: unknown format {suffix!r}; use .yaml, .yml, .json or .csv")
    import yaml

    try:
        text = path.read_text()
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:  # ValueError covers JSON and Unicode errors
        raise ConfigError(f"hierarchy file {path} could not be parsed: {e}") from None
    return from_mapping(data, classes, str(path))

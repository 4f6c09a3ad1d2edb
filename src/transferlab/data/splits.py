"""A/B splits of a dataset's classes.

random: task A = sorted(RandomState([seed]).choice(C, C // 2, replace=False)), task B the
rest. For ImageNet's 1000 classes in sorted-wnid order, seeds 0..3 are exactly the four
halves of the original study (its code wrapped the seed in a list; RandomState(seed) gives
other halves).
dissimilar: by the class hierarchy's two groups: A = the classes of the first group ("man-made"
in the packaged hierarchies and the ImageNet rule), B = those of the second ("natural").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError


class ClassGroups(list):
    """The group of every class, plus the two group names in task order (A first)."""

    def __init__(self, labels, order=("man-made", "natural")):
        super().__init__(labels)
        self.order = tuple(order)


@dataclass(frozen=True)
class Split:
    kind: str
    seed: int
    A: tuple[int, ...]
    B: tuple[int, ...]

    def task(self, name: str) -> tuple[int, ...]:
        return {"A": self.A, "B": self.B}[name]


def make_split(kind: str, num_classes: int, seed: int = 0,
               class_groups: list[str] | None = None) -> Split:
    if num_classes < 2:
        raise ConfigError(f"cannot split {num_classes} class(es) into two tasks; a split needs at least 2 classes")
    if kind == "random":
        a = np.random.RandomState([seed]).choice(np.arange(num_classes), num_classes // 2, replace=False)
        A = sorted(int(i) for i in a)
    elif kind == "dissimilar":
        if class_groups is None:
            raise ConfigError("split=dissimilar needs a class hierarchy with two groups (e.g. man-made "
                              "and natural); this dataset has none (use split=random, or with "
                              "data=imagefolder give data.hierarchy=<file>)")
        order = getattr(class_groups, "order", ("man-made", "natural"))
        bad = sorted({g for g in class_groups if g not in order})
        if len(order) != 2 or bad:
            raise ConfigError(f"class groups {bad or list(order)} are not valid; allowed: two groups, "
                              f"{' and '.join(order[:2])}")
        A = [i for i, g in enumerate(class_groups) if g == order[0]]
    else:
        raise ConfigError(f"split={kind!r} is not valid; allowed: random, dissimilar")
    B = sorted(set(range(num_classes)) - set(A))
    if not A or not B:
        raise ConfigError(f"split={kind} of {num_classes} classes leaves task {'A' if not A else 'B'} empty")
    return Split(kind, seed if kind == "random" else 0, tuple(A), tuple(B))

"""Cells: the trained networks of a sweep, named as in the paper, and the plan that orders them.
What each treatment means (its source, whether it fine-tunes, its label) is treatments.TABLE.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from . import treatments as T
from .config import parse_axis
from .models import num_weight_layers


def other(task: str) -> str:
    return "B" if task == "A" else "A"


@dataclass(frozen=True)
class Cell:
    treatment: str          # a treatments.TABLE name: base, selffer, ..., random
    target: str             # "A" or "B"
    n: int                  # layers taken from the source; 0 for a base
    split: str              # random | dissimilar
    split_seed: int
    seed: int               # training seed

    @property
    def source(self) -> str | None:
        """Where layers 1..n come from: a task name, "random", "pretrained" (model.weights), or
        None for a base."""
        rule = T.BY_NAME[self.treatment].source
        return {"own": self.target, "other": other(self.target)}.get(rule, rule)

    @property
    def finetune(self) -> bool:
        return T.BY_NAME[self.treatment].finetune

    @property
    def probe(self) -> bool:
        """A linear probe on the source's unit-n features (no network trained)."""
        return T.BY_NAME[self.treatment].probe

    @property
    def frozen_layers(self) -> int:
        """How many leading layers do not learn."""
        return 0 if self.treatment == "base" or self.finetune else self.n

    @property
    def name(self) -> str:
        """The paper's name: baseB, B3B, A3B+; R3B for the random-weights control, P3B for a
        pretrained source; A3B-probe for a probe."""
        if self.treatment == "base":
            return f"base{self.target}"
        src = {"random": "R", "pretrained": "P"}.get(self.source, self.source)
        return f"{src}{self.n}{self.target}{'+' if self.finetune else ''}{'-probe' if self.probe else ''}"

    @property
    def source_name(self) -> str | None:
        """What layers 1..n come from, in words: baseA, the pretrained network, random init."""
        return {None: None, "random": "random init", "pretrained": "the pretrained network"}.get(
            self.source, f"base{self.source}")

    @property
    def key(self) -> str:
        """Stable, filesystem-safe identity within a sweep folder."""
        return f"{self.split}{self.split_seed}_s{self.seed}_{self.name}"

    @property
    def base_dependency(self) -> "Cell | None":
        """The base network this cell copies its first n layers from (None: no base of the sweep)."""
        if self.source not in ("A", "B"):
            return None
        return Cell("base", self.source, 0, self.split, self.split_seed, self.seed)

    def as_dict(self) -> dict:
        return {**asdict(self), "name": self.name, "key": self.key, "source": self.source,
                "finetune": self.finetune, "probe": self.probe, "frozen_layers": self.frozen_layers,
                "label": T.BY_NAME[self.treatment].label}


def plan(cfg) -> list[Cell]:
    """Every cell of the sweep a config asks for, each base before the cells that need it."""
    L = num_weight_layers(cfg.model)
    ns = parse_axis(cfg.n, "n", 1, L - 1)
    seeds = parse_axis(cfg.seed, "seed", 0)
    split_seeds = parse_axis(cfg.split.seed, "split.seed", 0) if cfg.split.name == "random" else [0]
    treatments = T.expand(cfg.treatments, pretrained=bool(cfg.model.get("weights")))
    targets = sorted(set(cfg.directions))
    bases, cells = [], []
    for ss in split_seeds:
        for seed in seeds:
            for target in targets:
                base = Cell("base", target, 0, cfg.split.name, ss, seed)
                if base not in bases:
                    bases.append(base)
                for n in ns:
                    for t in treatments:
                        cell = Cell(t, target, n, cfg.split.name, ss, seed)
                        dep = cell.base_dependency
                        if dep is not None and dep not in bases:
                            bases.append(dep)
                        cells.append(cell)
    return bases + cells

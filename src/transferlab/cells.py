"""Cells: the trained networks of a sweep, named as in the paper, and the plan that orders them.

A cell trains on a target task (A or B). Its first n layers come from a source:
- base      n = 0: trained from scratch (``baseB``)
- selffer   copied from the target's own base and frozen (``B3B``); ``selffer_ft``: all
            layers learn (``B3B+``)
- transfer  copied from the other task's base and frozen (``A3B``); ``transfer_ft`` (``A3B+``)
- random    left at their random initialisation and frozen (``R3B``; paper section 4.3)
Layers n+1..L are always freshly initialised.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import parse_axis
from .models import num_weight_layers

TREATMENT_LABELS = {
    "base": "base", "selffer": "BnB", "selffer_ft": "BnB+", "transfer": "AnB",
    "transfer_ft": "AnB+", "random": "random",
}


def other(task: str) -> str:
    return "B" if task == "A" else "A"


@dataclass(frozen=True)
class Cell:
    treatment: str          # base | selffer | selffer_ft | transfer | transfer_ft | random
    target: str             # "A" or "B"
    n: int                  # layers taken from the source; 0 for a base
    split: str              # random | dissimilar
    split_seed: int
    seed: int               # training seed

    @property
    def source(self) -> str | None:
        """Where layers 1..n come from: a task name, "random", or None for a base."""
        if self.treatment == "base":
            return None
        if self.treatment == "random":
            return "random"
        return self.target if self.treatment.startswith("selffer") else other(self.target)

    @property
    def finetune(self) -> bool:
        return self.treatment.endswith("_ft")

    @property
    def frozen_layers(self) -> int:
        """How many leading layers do not learn."""
        return 0 if self.treatment == "base" or self.finetune else self.n

    @property
    def name(self) -> str:
        """The paper's name: baseB, B3B, A3B+, and R3B for the random-weights control."""
        if self.treatment == "base":
            return f"base{self.target}"
        src = "R" if self.source == "random" else self.source
        return f"{src}{self.n}{self.target}{'+' if self.finetune else ''}"

    @property
    def key(self) -> str:
        """Stable, filesystem-safe identity within a sweep folder."""
        return f"{self.split}{self.split_seed}_s{self.seed}_{self.name}"

    @property
    def base_dependency(self) -> "Cell | None":
        """The base network this cell copies its first n layers from."""
        if self.source in (None, "random"):
            return None
        return Cell("base", self.source, 0, self.split, self.split_seed, self.seed)

    def as_dict(self) -> dict:
        return {**asdict(self), "name": self.name, "key": self.key, "source": self.source,
                "finetune": self.finetune, "frozen_layers": self.frozen_layers,
                "label": TREATMENT_LABELS[self.treatment]}


def plan(cfg) -> list[Cell]:
    """Every cell of the sweep a config asks for, each base before the cells that need it."""
    L = num_weight_layers(cfg.model)
    ns = parse_axis(cfg.n, "n", 1, L - 1)
    seeds = parse_axis(cfg.seed, "seed", 0)
    split_seeds = parse_axis(cfg.split.seed, "split.seed", 0) if cfg.split.name == "random" else [0]
    treatments = [t for t in ("selffer", "selffer_ft", "transfer", "transfer_ft", "random")
                  if t in cfg.treatments]
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

"""Cells and the plan: the paper's names, stable keys (they name folders on disk), bases
trained once, before every cell that copies from them, and the counts of every sweep shape."""
from __future__ import annotations

import re

import pytest

from transferlab.cells import Cell, plan
from transferlab.config import compose

FT4 = "treatments=[selffer,selffer_ft,transfer,transfer_ft]"
ALL5 = "treatments=[selffer,selffer_ft,transfer,transfer_ft,random]"


@pytest.mark.parametrize("treatment, target, name, source, frozen", [
    ("base", "B", "baseB", None, 0),
    ("base", "A", "baseA", None, 0),
    ("selffer", "B", "B3B", "B", 3),
    ("selffer_ft", "B", "B3B+", "B", 0),
    ("transfer", "B", "A3B", "A", 3),
    ("transfer_ft", "B", "A3B+", "A", 0),
    ("random", "B", "R3B", "random", 3),
    ("selffer", "A", "A3A", "A", 3),
    ("transfer", "A", "B3A", "B", 3),
    ("transfer_ft", "A", "B3A+", "B", 0),
])
def test_paper_names_sources_and_frozen_layers(treatment, target, name, source, frozen):
    c = Cell(treatment, target, 0 if treatment == "base" else 3, "random", 0, 0)
    assert (c.name, c.source, c.frozen_layers) == (name, source, frozen)
    assert c.finetune == treatment.endswith("_ft")
    d = c.as_dict()
    assert d["name"] == name and d["key"] == c.key and d["source"] == source and d["n"] == c.n


def test_keys_are_stable_and_filesystem_safe():
    # Keys name the cells' folders: changing them orphans every existing result.
    assert Cell("base", "B", 0, "random", 0, 0).key == "random0_s0_baseB"
    assert Cell("transfer_ft", "B", 3, "random", 2, 1).key == "random2_s1_A3B+"
    assert Cell("selffer", "A", 7, "dissimilar", 0, 4).key == "dissimilar0_s4_A7A"
    assert Cell("random", "B", 5, "random", 0, 0).key == "random0_s0_R5B"
    cells = plan(compose(["n=1..7", ALL5, "directions=[A,B]", "seed=0,1", "split.seed=0..2"]))
    keys = [c.key for c in cells]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_+.=-]+", k) for k in keys)


def test_base_dependencies():
    assert Cell("transfer", "B", 2, "random", 3, 1).base_dependency == Cell("base", "A", 0, "random", 3, 1)
    assert Cell("selffer_ft", "B", 2, "random", 3, 1).base_dependency == Cell("base", "B", 0, "random", 3, 1)
    assert Cell("transfer", "A", 2, "dissimilar", 0, 0).base_dependency == Cell("base", "B", 0, "dissimilar", 0, 0)
    assert Cell("random", "B", 2, "random", 0, 0).base_dependency is None
    assert Cell("base", "B", 0, "random", 0, 0).base_dependency is None


def check_plan(cells: list[Cell]) -> None:
    """Bases first; each base once and shared by every cell that copies from it."""
    bases = [c for c in cells if c.treatment == "base"]
    assert len(set(bases)) == len(bases)
    position = {c: i for i, c in enumerate(cells)}
    assert len(position) == len(cells)  # no network twice
    for c in cells:
        dep = c.base_dependency
        if dep is not None:
            assert dep in position and position[dep] < position[c], f"{c.name} before its base"
            assert dep.seed == c.seed and dep.split_seed == c.split_seed


@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("directions, per_n", [("[B]", 4), ("[A,B]", 8)])
def test_counts_for_every_n(k, directions, per_n):
    cells = plan(compose([f"n=1..{k}", FT4, f"directions={directions}"]))
    check_plan(cells)
    assert sum(c.treatment == "base" for c in cells) == 2
    assert len(cells) == 2 + per_n * k
    targets = {c.target for c in cells if c.treatment != "base"}
    assert targets == set(directions.strip("[]").split(","))
    assert sorted({c.n for c in cells if c.treatment != "base"}) == list(range(1, k + 1))


def test_plan_of_the_paper_sweep_is_named_like_the_paper():
    cells = plan(compose(["n=1..7", FT4]))
    names = [c.name for c in cells]
    assert set(names[:2]) == {"baseA", "baseB"}
    for n in range(1, 8):
        assert {f"B{n}B", f"B{n}B+", f"A{n}B", f"A{n}B+"} <= set(names)
    assert len(cells) == 30


@pytest.mark.parametrize("overrides, bases, cells", [
    (["n=1..7", "treatments=[random]", "directions=[B]"], 1, 7),           # no base needed to copy from
    (["n=1..7", "treatments=[transfer]", "directions=[B]"], 2, 7),         # baseA to copy, baseB to compare
    (["n=1,3,5", ALL5, "directions=[B]"], 2, 15),
    (["n=1,3,5", ALL5, "directions=[A,B]"], 2, 30),
    (["n=2", FT4, "directions=[B]", "seed=0,1"], 4, 8),                    # replicates by training seed
    (["n=2", FT4, "directions=[B]", "split.seed=0..2"], 6, 12),            # ... and by split
    (["n=2", FT4, "directions=[A,B]", "seed=0,1", "split.seed=0,1"], 8, 32),
    (["n=2", FT4, "directions=[B]", "split=dissimilar", "split.seed=0..3"], 2, 4),  # one dissimilar split
])
def test_counts_with_random_treatment_and_replicates(overrides, bases, cells):
    planned = plan(compose(overrides))
    check_plan(planned)
    assert sum(c.treatment == "base" for c in planned) == bases
    assert sum(c.treatment != "base" for c in planned) == cells


def test_replicates_carry_their_seeds_and_share_nothing_across_them():
    planned = plan(compose(["n=2", "treatments=[transfer]", "seed=0,1", "split.seed=3,4"]))
    check_plan(planned)
    assert {(c.seed, c.split_seed) for c in planned} == {(0, 3), (0, 4), (1, 3), (1, 4)}
    for c in planned:
        if c.treatment == "transfer":
            dep = c.base_dependency
            assert (dep.seed, dep.split_seed) == (c.seed, c.split_seed)


def test_treatment_order_in_the_config_does_not_change_the_plan():
    a = plan(compose(["n=1,2", "treatments=[transfer,selffer]"]))
    b = plan(compose(["n=1,2", "treatments=[selffer,transfer]"]))
    assert a == b

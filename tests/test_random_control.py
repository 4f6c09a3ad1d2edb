"""The random-weights control (paper section 4.3): layers 1..n left at their random
initialisation and frozen, layers n+1..L trained on the target task, no base network used."""
from __future__ import annotations

import torch

from conftest import tiny

from transferlab.cells import Cell, plan
from transferlab.config import compose
from transferlab.models import build_model
from transferlab.runner import SweepContext, _seed_for, build_cell_model, run_cell
from transferlab.store import SweepStore, load_state

OVERRIDES = tiny("data.classes_per_superclass=2", "data.train_per_class=24", "train.batch_size=16")


def test_random_cells_need_no_base_and_are_named_like_the_paper():
    cfg = compose(["n=1,3", "treatments=[random]", "directions=[A,B]"])
    cells = plan(cfg)
    randoms = [c for c in cells if c.treatment == "random"]
    assert [c.name for c in randoms] == ["R1A", "R3A", "R1B", "R3B"]
    assert all(c.base_dependency is None and c.source == "random" and c.frozen_layers == c.n
               for c in randoms)


def test_random_cell_keeps_its_random_prefix_frozen_and_trains_the_rest(tmp_path):
    cfg = compose(OVERRIDES + [f"results_dir={tmp_path}"])
    ctx = SweepContext(cfg, SweepStore(tmp_path))
    n = 3
    cell = Cell("random", "B", n, "random", 0, 0)
    # Before training: every layer is exactly a fresh network's init (same seed, same initialiser
    # as a base), and the first n layers take no gradient.
    fresh = build_model(cfg.model, ctx.task("B", 0).num_classes,
                        generator=torch.Generator().manual_seed(_seed_for(cell, "init")))
    model = build_cell_model(ctx, cell)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert [all(not p.requires_grad for p in layer.parameters()) for layer in model.layers] == \
        [True] * n + [False] * (8 - n)

    rec = run_cell(ctx, cell, log=lambda m: None)
    assert rec["status"] == "done", rec.get("error")
    assert rec["source_key"] is None and rec["frozen_layers"] == n and rec["name"] == "R3B"
    trained = load_state(ctx.store.model_path(cell.key))
    for key, before in fresh.state_dict().items():
        layer = int(key.split(".")[1])
        if layer < n:
            assert torch.equal(trained[key], before), f"{key} of a frozen random layer changed"
        else:
            assert not torch.equal(trained[key], before), f"{key} above the frozen prefix did not learn"
    # No base network was trained or read for it.
    assert not (tmp_path / "cells" / Cell("base", "B", 0, "random", 0, 0).key).exists()

"""Training that collapses: a network that had learned and went back to chance (dead ReLUs after
a too-large step) is a failed network, never a measurement; the criterion has no false alarms
on networks that learn slowly, never learn, or dip for one evaluation."""
from __future__ import annotations

import math

import pytest

from conftest import tiny

from transferlab import runner, sweep
from transferlab.cells import Cell
from transferlab.convergence import collapse
from transferlab.store import SweepStore

LN5 = math.log(5)


def curve(*points):
    """(val_top1, train_loss) per evaluation, two per epoch."""
    return [{"epoch": (i + 1) / 2, "val_top1": a, "train_loss": loss} for i, (a, loss) in enumerate(points)]


def test_a_network_back_at_chance_after_learning_has_collapsed():
    h = curve((0.3, 1.6), (0.45, 1.5), (0.2, 2.0), (0.2, 1.63))
    why = collapse(h, 5)
    assert why.startswith("training collapsed in epoch 2: after reaching 45.0% val top-1")
    assert "ln 5 = 1.609" in why and "its units died" in why


@pytest.mark.parametrize("points", [
    [(0.2, 1.61), (0.2, 1.61), (0.2, 1.61), (0.2, 1.61)],          # never learned (a hard task, random features)
    [(0.3, 1.6), (0.45, 1.5), (0.2, 1.7), (0.5, 1.4)],            # one bad evaluation, then recovers
    [(0.3, 1.6), (0.45, 1.5), (0.2, 1.40), (0.2, 1.40)],          # at chance on val, but the training loss is not
    [(0.3, 1.6), (0.45, 1.5)],                                     # too few evaluations to tell
])
def test_no_false_alarms(points):
    assert collapse(curve(*points), 5) is None


def test_two_classes():
    assert collapse(curve((0.6, 0.69), (0.8, 0.5), (0.5, 0.70), (0.5, 0.69)), 2) is not None
    assert collapse(curve((0.6, 0.69), (0.7, 0.6), (0.5, 0.70), (0.5, 0.69)), 2) is None  # never 75%


# The default lr: a network must have learned by epoch 5 for its death to count as a collapse.
ARGS = tiny("n=1", "treatments=[selffer,selffer_ft]", "data.train_per_class=64", "data.val_per_class=16",
            "train.batch_size=16", "train.epochs=10", "train.lr=0.03", "analyze=false")


def killing(victim: Cell, real_train):
    """runner.train, but after its fifth epoch the victim's first layer dies for good: every
    ReLU of conv1 off (no gradient flows through a dead ReLU; momentum cannot bring a bias of
    -100 back)."""
    def train(model, batches, cfg, **kw):
        if kw["seed"] != runner._seed_for(victim, "train"):
            return real_train(model, batches, cfg, **kw)
        save = kw["on_epoch_end"]

        def kill(state):
            if state["epoch"] == 5:
                conv1 = model.layers[0][0]
                conv1.weight.data.zero_()
                conv1.bias.data.fill_(-100.0)
            save(state)
        return real_train(model, batches, cfg, **{**kw, "on_epoch_end": kill})
    return train


def test_a_collapsed_base_fails_with_every_cell_that_needs_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "train", killing(Cell("base", "B", 0, "random", 0, 0), runner.train))
    assert sweep.main(ARGS + [f"results_dir={tmp_path}"]) == 1
    out = capsys.readouterr().out
    store = SweepStore(tmp_path / "synthetic-random")
    rec = store.read_record("random0_s0_baseB")
    assert rec["status"] == "failed" and "TrainingDiverged: training collapsed in epoch" in rec["error"]
    assert "every cell would copy its dead units" in rec["error"]
    assert store.read_record("random0_s0_B1B")["error"].startswith("its base baseB failed: TrainingDiverged")
    assert "training collapsed" in out


def test_a_collapsed_cell_is_recorded_stopped_and_left_out_of_the_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "train", killing(Cell("selffer_ft", "B", 1, "random", 0, 0), runner.train))
    assert sweep.main(ARGS + [f"results_dir={tmp_path}"]) == 0   # a result, not a failure to retry
    out = capsys.readouterr().out
    root = tmp_path / "synthetic-random"
    rec = SweepStore(root).read_record("random0_s0_B1B+")
    assert rec["status"] == "done" and rec["collapsed"].startswith("training collapsed in epoch")
    assert "lower train.lr" in rec["collapsed"]
    assert rec["history"][-1]["epoch"] < 10                      # stopped: training on brings nothing back
    assert "COLLAPSED, left out of the tables" in out and "3 trained (1 collapsed)" in out
    from transferlab import analysis

    df = analysis.load(root)
    assert "B1B+" in set(df.name)
    assert "BnB+" not in analysis.summary(df).index             # no table shows the dead network
    assert analysis.effects(df).label.tolist() == ["BnB"]
    caveat = analysis.caveats(df)[0]
    assert caveat.startswith("1 network(s) left out of every table and figure because their training collapsed")
    assert "B1B+ (split seed 0, seed 0)" in caveat
    analysis.write_figures(root)                                  # the report names it too
    assert "left out of every table and figure because their training collapsed: B1B+" in (root / "report.md").read_text()

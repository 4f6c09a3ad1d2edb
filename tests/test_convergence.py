"""Training that collapses: a network that had learned and went back to chance (dead ReLUs after
a too-large step) is a failed network, never a measurement; the criterion has no false alarms
on networks that learn slowly, never learn, or dip for one evaluation."""
from __future__ import annotations

import math

import pytest

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
    assert "ln 5 = 1.609" in why and "train.lr" in why and "train.grad_clip" in why


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


def test_a_collapsed_network_fails_with_the_reason_instead_of_reporting_chance(tmp_path, monkeypatch, capsys):
    """After its fifth epoch baseB's first layer is killed (every ReLU of conv1 dead, for good:
    no gradient flows through a dead ReLU). The trainer stops it two evaluations later and the
    sweep records it as failed, with B1B, which needs it."""
    args = ["n=1", "treatments=[selffer]", "data.num_superclasses=2", "data.classes_per_superclass=3",
            "data.train_per_class=64", "data.val_per_class=16", "train.batch_size=16", "train.epochs=10",
            "device=cpu", "analyze=false", f"results_dir={tmp_path}"]
    real_train = runner.train

    def train_and_kill_after_epoch_5(model, batches, cfg, **kw):
        if kw["seed"] != runner._seed_for(Cell("base", "B", 0, "random", 0, 0), "train"):
            return real_train(model, batches, cfg, **kw)
        save = kw["on_epoch_end"]

        def kill(state):
            if state["epoch"] == 5:  # momentum cannot bring a bias of -100 back
                conv1 = model.layers[0][0]
                conv1.weight.data.zero_()
                conv1.bias.data.fill_(-100.0)
            save(state)
        return real_train(model, batches, cfg, **{**kw, "on_epoch_end": kill})

    monkeypatch.setattr(runner, "train", train_and_kill_after_epoch_5)
    assert sweep.main(args) == 1
    out = capsys.readouterr().out
    store = SweepStore(tmp_path / "synthetic-random")
    rec = store.read_record("random0_s0_baseB")
    assert rec["status"] == "failed" and "TrainingDiverged: training collapsed in epoch" in rec["error"]
    assert store.read_record("random0_s0_B1B")["error"].startswith("its base baseB failed: TrainingDiverged")
    assert "training collapsed" in out

"""Fine-tuning controls: train.transfer_lr_mult (the learning-rate multiplier of the copied units
of a fine-tuned cell; 0 freezes them) and train.layer_decay (copied unit i of n learns at
transfer_lr_mult * layer_decay**(n - i)). The defaults (1, 1) train exactly as before."""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import task_setup, tiny
from omegaconf import OmegaConf

from transferlab import sweep
from transferlab.batches import make_batches
from transferlab.models import build_model, copy_layers, freeze_layers
from transferlab.store import SweepStore, load_state
from transferlab.train import make_optimizer, param_groups, train, unit_lr_mults


@pytest.fixture(scope="module")
def setup():
    """(config, dataset, task B: 3 classes of 12 training images, a source network)."""
    return task_setup(*tiny())


def _cell(setup, n: int, frozen: int = 0):
    """A network with units 1..n copied from the source and the first ``frozen`` frozen."""
    cfg, _, task, source = setup
    model = build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(2))
    copy_layers(model, source, n)
    freeze_layers(model, frozen)
    return model


def _recipe(setup, **keys):
    tcfg = OmegaConf.create(OmegaConf.to_container(setup[0].train, resolve=True))
    for k, v in keys.items():
        tcfg[k] = v
    return tcfg


def _batches(setup, batch_size=8):
    cfg, ds, task, _ = setup
    return make_batches(task, ds.mean, ds.std, torch.device("cpu"), batch_size, cfg.data.augment)


def _old_param_groups(model, cfg) -> list[dict]:
    """train.param_groups as it was before these keys: weights, then biases."""
    weights, biases = [], []
    for p in model.parameters():
        if p.requires_grad:
            (biases if p.ndim == 1 else weights).append(p)
    groups = [{"params": weights, "weight_decay": cfg.weight_decay, "lr_mult": 1.0}]
    if biases:
        groups.append({"params": biases, "lr_mult": cfg.bias_lr_mult,
                       "weight_decay": cfg.weight_decay if cfg.bias_weight_decay else 0.0})
    return [g for g in groups if g["params"]]


def _shape(groups):
    return [(g["lr_mult"], g["weight_decay"], [id(p) for p in g["params"]]) for g in groups]


def _unit_of(model) -> dict:
    return {id(p): i for i, layer in enumerate(model.layers, 1) for p in layer.parameters()}


def quiet(m):
    return None


# ----------------------------------------------------------------------------- the defaults

@pytest.mark.parametrize("bias_lr_mult", [1.0, 2.0])
def test_defaults_give_the_param_groups_of_before(setup, bias_lr_mult):
    tcfg = _recipe(setup, bias_lr_mult=bias_lr_mult, bias_weight_decay=False)
    model = _cell(setup, 3)
    mults = unit_lr_mults(len(model.layers), tcfg, frozen_layers=0, transferred=3)
    assert mults == [1.0] * len(model.layers)
    assert _shape(param_groups(model, tcfg, mults)) == _shape(_old_param_groups(model, tcfg))
    assert _shape(param_groups(model, tcfg)) == _shape(_old_param_groups(model, tcfg))
    frozen = _cell(setup, 3, frozen=3)
    assert _shape(param_groups(frozen, tcfg, unit_lr_mults(8, tcfg, frozen_layers=3))) == \
        _shape(_old_param_groups(frozen, tcfg))


def test_defaults_train_a_finetuned_cell_bit_identically(setup):
    explicit = _recipe(setup, transfer_lr_mult=1.0, layer_decay=1.0)
    a, b = _cell(setup, 3), _cell(setup, 3)
    ra = train(a, _batches(setup), explicit, frozen_layers=0, transferred=3, seed=3, log=quiet)
    rb = train(b, _batches(setup), _recipe(setup), frozen_layers=0, seed=3, log=quiet)  # the call of before
    assert ra["unit_lr_mult"] == rb["unit_lr_mult"] == [1.0] * 8
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]


# ---------------------------------------------------------------- the multipliers take effect

def _one_step(setup, n, **keys):
    """The cell after one SGD step without momentum at a constant learning rate."""
    cfg, _, task, _ = setup
    tcfg = _recipe(setup, lr=0.1, momentum=0.0, schedule="constant", warmup_epochs=0, grad_clip=0.0,
                   evals_per_epoch=1, **keys)
    model = _cell(setup, n)
    before = copy.deepcopy(model.state_dict())
    r = train(model, _batches(setup, len(task.train)), tcfg, frozen_layers=0, transferred=n, seed=3, log=quiet)
    assert r["history"][-1]["step"] == 1
    return before, model.state_dict()


def test_transfer_lr_mult_scales_the_step_of_the_copied_units_only(setup):
    n = 3
    before, full = _one_step(setup, n)
    _, tenth = _one_step(setup, n, transfer_lr_mult=0.1)
    for k, w in before.items():
        unit = int(k.split(".")[1]) + 1
        if unit <= n:
            d1, d01 = full[k] - w, tenth[k] - w
            assert d1.abs().max() > 0, k
            torch.testing.assert_close(d01, 0.1 * d1, rtol=1e-3, atol=4e-7 * float(w.abs().max()))
        else:  # fresh units: the same first step, bit for bit
            assert torch.equal(full[k], tenth[k]), k


def test_layer_decay_sets_each_copied_units_multiplier(setup):
    n, mult, decay = 4, 0.3, 0.5
    tcfg = _recipe(setup, transfer_lr_mult=mult, layer_decay=decay, bias_lr_mult=2.0)
    want = [mult * decay ** (n - i) for i in range(1, n + 1)] + [1.0] * (8 - n)
    mults = unit_lr_mults(8, tcfg, frozen_layers=0, transferred=n)
    assert mults == pytest.approx(want)
    assert mults[n - 1] == mult and mults[0] == pytest.approx(mult / 8)
    model = _cell(setup, n)
    opt = make_optimizer(param_groups(model, tcfg, mults), tcfg, torch.device("cpu"))
    unit = _unit_of(model)
    seen = 0
    for g in opt.param_groups:
        for p in g["params"]:
            assert g["lr_mult"] == pytest.approx(want[unit[id(p)] - 1] * (2.0 if p.ndim == 1 else 1.0))
            seen += 1
    assert seen == sum(1 for _ in model.parameters())
    # and train() applies them: every group's lr is the schedule's times its multiplier
    states = []
    r = train(model, _batches(setup), tcfg, frozen_layers=0, transferred=n, seed=3, log=quiet,
              on_epoch_end=states.append)
    assert r["unit_lr_mult"] == pytest.approx(want)
    last_lr = r["history"][-1]["lr"]
    groups = states[-1]["optimizer"]["param_groups"]
    assert len(groups) == 2 * len(set(want))
    assert all(g["lr"] == pytest.approx(last_lr * g["lr_mult"]) for g in groups)


def test_bases_and_frozen_cells_ignore_the_keys(setup):
    tcfg = _recipe(setup, transfer_lr_mult=0.1, layer_decay=0.5)
    assert unit_lr_mults(8, tcfg) == [1.0] * 8                                     # a base
    assert unit_lr_mults(8, tcfg, frozen_layers=3) == [0.0] * 3 + [1.0] * 5         # BnB, AnB, RnB
    model = _cell(setup, 3, frozen=3)
    assert _shape(param_groups(model, tcfg, unit_lr_mults(8, tcfg, frozen_layers=3))) == \
        _shape(_old_param_groups(model, tcfg))


def test_a_trainable_unit_with_multiplier_zero_is_refused(setup):
    """transfer_lr_mult=0 means frozen: the caller freezes the units (runner does)."""
    tcfg = _recipe(setup, transfer_lr_mult=0.0)
    with pytest.raises(ValueError, match="transfer_lr_mult=0"):
        train(_cell(setup, 2), _batches(setup), tcfg, frozen_layers=0, transferred=2, seed=3, log=quiet)


def test_resume_with_per_unit_groups_is_bit_exact(setup, tmp_path):
    tcfg = _recipe(setup, transfer_lr_mult=0.5, layer_decay=0.5, epochs=2)
    straight = _cell(setup, 3)
    ref = train(straight, _batches(setup), tcfg, frozen_layers=0, transferred=3, seed=5, log=quiet)

    class Stop(Exception):
        pass

    def save_then_stop(state):
        torch.save(state, tmp_path / "ckpt.pt")
        raise Stop

    with pytest.raises(Stop):
        train(_cell(setup, 3), _batches(setup), tcfg, frozen_layers=0, transferred=3, seed=5, log=quiet,
              on_epoch_end=save_then_stop)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = _cell(setup, 3)
    out = train(resumed, _batches(setup), tcfg, frozen_layers=0, transferred=3, seed=5, log=quiet, state=state)
    assert [h["train_loss"] for h in out["history"]] == [h["train_loss"] for h in ref["history"]]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------------- through the sweep

def _sweep(tmp_path, capsys, *overrides):
    rc = sweep.main(tiny("n=2", "analyze=false", f"results_dir={tmp_path}", *overrides))
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    store = SweepStore(tmp_path / "synthetic-random")
    return store, {r["name"]: r for r in store.records()}


def test_records_carry_the_values_applied_to_each_cell(tmp_path, capsys):
    _, recs = _sweep(tmp_path, capsys, "treatments=[selffer,selffer_ft,transfer_ft]",
                     "train.transfer_lr_mult=0.5", "train.layer_decay=0.5")
    assert sorted(recs) == ["A2B+", "B2B", "B2B+", "baseA", "baseB"]
    assert all(r["status"] == "done" for r in recs.values())
    for name in ("baseA", "baseB"):
        assert (recs[name]["transfer_lr_mult"], recs[name]["layer_decay"]) == (None, None)
        assert recs[name]["unit_lr_mult"] == [1.0] * 8 and recs[name]["frozen_layers"] == 0
    assert (recs["B2B"]["transfer_lr_mult"], recs["B2B"]["layer_decay"]) == (None, None)
    assert recs["B2B"]["unit_lr_mult"] == [0.0, 0.0] + [1.0] * 6 and recs["B2B"]["frozen_layers"] == 2
    for name in ("B2B+", "A2B+"):
        r = recs[name]
        assert (r["transfer_lr_mult"], r["layer_decay"], r["frozen_layers"]) == (0.5, 0.5, 0)
        assert r["unit_lr_mult"] == [0.25, 0.5] + [1.0] * 6


def test_transfer_lr_mult_zero_freezes_the_copied_units_and_their_batchnorm(tmp_path, capsys):
    store, recs = _sweep(tmp_path, capsys, "model=resnet18_cifar", "treatments=[selffer_ft]",
                         "data.train_per_class=8", "data.val_per_class=4", "train.transfer_lr_mult=0")
    r = recs["B2B+"]
    assert r["status"] == "done" and r["finetune"] is True
    assert (r["frozen_layers"], r["transfer_lr_mult"]) == (2, 0.0)
    assert r["unit_lr_mult"][:2] == [0.0, 0.0] and set(r["unit_lr_mult"][2:]) == {1.0}
    assert r["feature_cache_layers"] == 2  # treated as frozen: the feature cache applies
    base, cell = load_state(store.model_path(recs["baseB"]["key"])), load_state(store.model_path(r["key"]))
    copied = [k for k in base if int(k.split(".")[1]) < 2]
    assert any("running_mean" in k for k in copied)
    assert all(torch.equal(base[k], cell[k]) for k in copied)                    # params and buffers
    assert any(not torch.equal(base[k], cell[k]) for k in base if k not in copied)  # the rest learned


@pytest.mark.parametrize("override", ["train.transfer_lr_mult=-1", "train.layer_decay=0", "train.layer_decay=1.5"])
def test_out_of_bounds_values_are_refused_before_a_sweep_folder_is_written(tmp_path, capsys, override):
    rc = sweep.main(tiny("n=1", f"results_dir={tmp_path}", override))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {override.split('=')[0]}="), err
    assert not (tmp_path / "synthetic-random").exists()


def test_sweep_json_leaves_the_defaults_out_so_older_sweep_folders_still_match():
    from transferlab.config import compose
    from transferlab.sweep import defining_config

    assert not {"transfer_lr_mult", "layer_decay"} & set(defining_config(compose(tiny()))["train"])
    changed = defining_config(compose(tiny("train.transfer_lr_mult=0.1", "train.layer_decay=0.5")))["train"]
    assert (changed["transfer_lr_mult"], changed["layer_decay"]) == (0.1, 0.5)  # another recipe: refused

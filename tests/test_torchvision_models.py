"""Every torchvision architecture of the registry: its units compute what torchvision's network
computes, it is drawn from its generator alone, copying takes parameters and buffers, frozen
units (BatchNorm's running statistics included) are bit-identical after training, re-initialised
units are not copies, n is checked against its units, and a sweep runs end to end."""
from __future__ import annotations

import pytest
import torch
from conftest import task_setup, tiny
from torch.nn.modules.batchnorm import _BatchNorm

from transferlab import sweep
from transferlab.cells import plan
from transferlab.config import ConfigError, compose, validate
from transferlab.models import build_model, copy_layers, freeze_layers, num_weight_layers, unit_names
from transferlab.models.torchvision_nets import construct, own_dropout, units
from transferlab.models.units import UnitNet
from transferlab.store import SweepStore
from transferlab.train import make_batches, train

# (model, image size, units): small enough inputs for a CPU; VGG's five pools need 32 pixels.
ARCHS = [("vgg11", 32, 11), ("vgg16", 32, 16), ("resnet18", 32, 10), ("resnet50", 32, 18),
         ("resnet18_cifar", 16, 10), ("vit_tiny", 16, 8), ("vit_b_16", 32, 14)]
IDS = [a for a, _, _ in ARCHS]


def model_cfg(arch: str, size: int):
    cfg = compose([f"model={arch}", f"data.image_size={size}"])
    cfg.model.input_size = size
    return cfg.model


@pytest.mark.parametrize("arch, size, L", ARCHS, ids=IDS)
def test_units_compute_what_torchvision_computes(arch, size, L):
    cfg = model_cfg(arch, size)
    torch.manual_seed(0)
    m = construct(cfg, 5)
    own_dropout(m)
    net = UnitNet(*units(m, arch))
    assert len(net.layers) == num_weight_layers(cfg) == len(unit_names(cfg)) == L
    m.eval(), net.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(net(x), m(x), rtol=0, atol=0)
        assert torch.equal(net(net.forward_prefix(x, 2), start=2), net(x))


@pytest.mark.parametrize("arch, size, L", ARCHS, ids=IDS)
def test_a_network_is_drawn_from_its_generator_alone(arch, size, L):
    cfg = model_cfg(arch, size)
    state = torch.random.get_rng_state()
    a = build_model(cfg, 4, torch.Generator().manual_seed(3)).state_dict()
    b = build_model(cfg, 4, torch.Generator().manual_seed(3)).state_dict()
    c = build_model(cfg, 4, torch.Generator().manual_seed(4)).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # the process-wide stream untouched
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].std() > 0)


def trained_source(cfg, num_classes: int):
    """A 'trained' source: weights and BatchNorm statistics that no fresh network has."""
    src = build_model(cfg, num_classes, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for k, v in src.state_dict().items():
            if v.is_floating_point():
                v.add_(torch.rand_like(v) * 0.01 + 0.01)
            else:
                v.add_(7)  # num_batches_tracked
    return src


@pytest.mark.parametrize("arch, size, L", ARCHS, ids=IDS)
def test_copy_freeze_reinit_and_train(arch, size, L):
    cfg, ds, task, _ = task_setup(*tiny(f"model={arch}", f"data.image_size={size}", f"model.input_size={size}",
                                        "data.train_per_class=8", "data.val_per_class=2", "train.batch_size=8"))
    n = 2
    src = trained_source(cfg.model, task.num_classes)
    model = build_model(cfg.model, task.num_classes, torch.Generator().manual_seed(2))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    copy_layers(model, src, n)
    for i in range(L):
        mine, theirs = model.layers[i].state_dict(), src.layers[i].state_dict()
        same = all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert same == (i < n), f"unit {i + 1} ({unit_names(cfg.model)[i]})"
    assert any(not torch.equal(model.state_dict()[k], fresh[k]) for k in fresh if k.startswith("layers.0."))

    freeze_layers(model, n)
    bns = [(i, m) for i, u in enumerate(model.layers) for m in u.modules() if isinstance(m, _BatchNorm)]
    assert all(m.training == (i >= n) for i, m in bns)  # at once: a forward before train() must not move them
    model.train()
    bns = [(i, m) for i, u in enumerate(model.layers) for m in u.modules() if isinstance(m, _BatchNorm)]
    assert all(m.training == (i >= n) for i, m in bns)  # frozen units normalise with their running stats
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = make_batches(task, ds.mean, ds.std, torch.device("cpu"), 8)
    r = train(model, batches, cfg.train, frozen_layers=n, seed=0, log=lambda m: None, detect_collapse=False)
    after = model.state_dict()
    for k in after:
        unit = int(k.split(".")[1])
        if unit < n:
            assert torch.equal(after[k], before[k]), f"frozen {k} moved"
    assert not torch.equal(after[f"layers.{L - 1}." + next(iter(model.layers[L - 1].state_dict()))],
                           before[f"layers.{L - 1}." + next(iter(model.layers[L - 1].state_dict()))])
    assert r["feature_cache_layers"] <= n


@pytest.mark.parametrize("arch, size, L", ARCHS, ids=IDS)
def test_n_is_checked_against_the_models_units(arch, size, L):
    data = f"data.image_size={size}"
    validate(compose([f"model={arch}", f"n=1..{L - 1}", data]))
    assert sorted({c.n for c in plan(compose([f"model={arch}", "n=all", data])) if c.n}) == list(range(1, L))
    with pytest.raises(ConfigError) as e:
        validate(compose([f"model={arch}", f"n={L}", data]))
    assert f"1..{L - 1}" in str(e.value)


def test_shapes_are_checked_before_anything_is_written(tmp_path, capsys):
    rc = sweep.main(["model=vgg11", "n=1", f"results_dir={tmp_path}"])  # 16-pixel data: too small for 5 pools
    assert rc == 2 and "model.input_size=16 is too small for vgg11" in capsys.readouterr().err
    assert not (tmp_path / "synthetic-random").exists()
    with pytest.raises(ConfigError, match="model.input_size=18 is not a multiple of model.patch_size=4"):
        validate(compose(["model=vit_tiny", "model.input_size=18"]))
    with pytest.raises(ConfigError, match="model.hidden_dim=100 is not a multiple of model.num_heads=3"):
        validate(compose(["model=vit_tiny", "model.input_size=16", "model.hidden_dim=100"]))
    with pytest.raises(ConfigError, match="model.hidden_dim=100 is not a multiple"):  # before the data's size is known
        validate(compose(["model=vit_tiny", "model.hidden_dim=100"]))


@pytest.mark.parametrize("arch, n", [("resnet18_cifar", "1,4"), ("vit_tiny", "1,4")])
def test_a_sweep_runs_end_to_end_and_its_records_name_the_units(tmp_path, capsys, arch, n):
    rc = sweep.main(tiny(f"model={arch}", f"n={n}", "data.train_per_class=8", "data.val_per_class=4",
                         "analyze=false", f"results_dir={tmp_path}"))
    out = capsys.readouterr().out
    assert rc == 0, out
    names = unit_names(model_cfg(arch, 16))
    assert f"n counts the {len(names)} units of {arch}: 1 {names[0]}, 2 {names[1]}" in out
    recs = SweepStore(tmp_path / "synthetic-random").records()
    assert len(recs) == 2 + 2 * 4 and all(r["status"] == "done" for r in recs)
    assert all(r["architecture"] == arch and r["units"] == names for r in recs)
    assert all(r["config"]["model"]["input_size"] == 16 for r in recs)  # the data's size
    frozen = [r for r in recs if r["treatment"] in ("selffer", "transfer")]
    assert all(r["feature_cache_layers"] == r["n"] for r in frozen)  # BatchNorm in eval: cacheable

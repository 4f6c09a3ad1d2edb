"""train.optimizer: sgd (fused, with momentum and nesterov) or adamw; anything else is refused."""
import copy

import pytest
from conftest import task_setup
import torch
from omegaconf import OmegaConf

from transferlab.batches import make_batches
from transferlab.models import build_model, copy_layers, freeze_layers
from transferlab.train import make_optimizer, param_groups, train

TINY = ["data.train_per_class=20", "data.val_per_class=6", "train.epochs=1"]


@pytest.fixture(scope="module")
def setup():
    return task_setup(*TINY)


def _cell(setup, frozen, optimizer):
    cfg, ds, task, source = setup
    tcfg = OmegaConf.create(OmegaConf.to_container(cfg.train, resolve=True))
    tcfg.optimizer = optimizer
    model = build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(2))
    copy_layers(model, source, frozen)
    freeze_layers(model, frozen)
    batches = make_batches(task, ds.mean, ds.std, torch.device("cpu"), cfg.train.batch_size, cfg.data.augment)
    return model, batches, tcfg


def test_adamw_trains_and_leaves_frozen_layers_alone(setup):
    model, batches, tcfg = _cell(setup, 2, "adamw")
    before = copy.deepcopy(model.state_dict())
    result = train(model, batches, tcfg, frozen_layers=2, seed=3, log=lambda m: None)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result["history"])
    after = model.state_dict()
    frozen = {k for k in before if k.startswith(("layers.0.", "layers.1."))}
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in frozen)


def test_make_optimizer_builds_each_choice(setup):
    model, _, tcfg = _cell(setup, 0, "sgd")
    groups = param_groups(model, tcfg)
    sgd = make_optimizer(groups, tcfg, torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] == bool(tcfg.nesterov)
    tcfg.optimizer = "adamw"
    adamw = make_optimizer(param_groups(model, tcfg), tcfg, torch.device("cpu"))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.9, 0.999) and adamw.defaults["eps"] == 1e-8
    assert adamw.param_groups[0]["weight_decay"] == tcfg.weight_decay


def test_an_unknown_optimizer_is_refused_naming_the_key(setup):
    model, batches, tcfg = _cell(setup, 0, "rmsprop")
    with pytest.raises(ValueError, match=r"train\.optimizer.*sgd, adamw"):
        train(model, batches, tcfg, frozen_layers=0, seed=3, log=lambda m: None)

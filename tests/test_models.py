"""The network and layer surgery: structure and shapes of every preset (Caffe's feature-map
sizes), copy / freeze / re-initialise the first n layers, and what a real training run (the
runner and trainer, no mocks) does to frozen, copied, re-initialised and fine-tuned layers."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_cfg, without_timing
from torch import nn

from transferlab.cells import Cell
from transferlab.config import compose
from transferlab.models import (NUM_LAYERS, build_model, copy_layers, freeze_layers, layer_parameters,
                                num_weight_layers)
from transferlab.models.caffenet import weight_layer
from transferlab.models.dropout import Dropout
from transferlab.models.lrn import LocalResponseNorm
from transferlab.runner import SweepContext, build_cell_model, run_cell
from transferlab.store import SweepStore, atomic_torch_save, load_state
from transferlab.train import make_batches, param_groups, train

N = 3  # layers copied in the trained cells below


def layer_of(param_name: str) -> int:
    """1-based layer of a state_dict key such as ``layers.2.0.weight``."""
    return int(param_name.split(".")[1]) + 1


def cell(treatment: str, target: str = "B", n: int = N, seed: int = 0) -> Cell:
    return Cell(treatment, target, 0 if treatment == "base" else n, "random", 0, seed)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- structure, shapes

def test_layers_are_indexed_1_to_8_like_the_paper():
    model = build_model(compose(["model=caffenet"]).model, num_classes=7)
    assert num_weight_layers(compose([]).model) == NUM_LAYERS == len(model.layers) == 8
    kinds = [type(weight_layer(layer)) for layer in model.layers]
    assert kinds == [nn.Conv2d] * 5 + [nn.Linear] * 3
    # Every block holds exactly one weight layer (so "layer i" is unambiguous) ...
    for layer in model.layers:
        assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layer.modules()) == 1
    # ... and what follows it: ReLU; pool + LRN after 1 and 2; pool after 5; dropout after 6, 7
    # (the ReLU after the pool: max and ReLU commute, see test_relu_after_pool_is_caffes_order).
    follow = [[type(m) for m in layer if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Flatten))]
              for layer in model.layers]
    pool_lrn = [nn.MaxPool2d, nn.ReLU, LocalResponseNorm]
    assert follow[:5] == [pool_lrn, pool_lrn, [nn.ReLU], [nn.ReLU], [nn.MaxPool2d, nn.ReLU]]
    assert follow[5:7] == [[nn.ReLU, Dropout]] * 2
    assert follow[7] == [] and weight_layer(model.layers[7]).out_features == 7
    assert all(p is q for p, q in zip(layer_parameters(model, [2]), model.layers[1].parameters()))


def test_relu_after_pool_is_caffes_order():
    """Caffe's conv -> ReLU -> pool and our conv -> pool -> ReLU: the same values and gradients."""
    model = build_model(compose([]).model, num_classes=7, generator=torch.Generator().manual_seed(0))
    conv, pool = model.layers[0][0], model.layers[0][1]
    x = torch.randn(4, 3, 16, 16)
    ours = nn.Sequential(conv, pool, nn.ReLU())
    caffe = nn.Sequential(conv, nn.ReLU(), pool)
    g = torch.randn_like(ours(x))
    outs, grads = [], []
    for net in (ours, caffe):
        xi = x.clone().requires_grad_()
        out = net(xi)
        out.backward(g)
        outs.append(out.detach())
        grads.append((xi.grad, conv.weight.grad.clone()))
        conv.weight.grad = None
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_dropout_masks_come_from_the_networks_generator():
    from transferlab.models.dropout import keep_mask

    drop = Dropout(0.5)
    drop.generator = torch.Generator().manual_seed(3)
    x = torch.ones(256, 256)
    torch.manual_seed(0)
    a = drop(x)
    drop.generator.manual_seed(3)
    torch.manual_seed(1)                                # the process-wide generator plays no part
    assert torch.equal(a, drop(x))
    assert set(a.unique().tolist()) == {0.0, 2.0}
    assert abs((a == 0).float().mean().item() - 0.5) < 0.01
    kept = keep_mask((100_000,), 0.25, torch.Generator().manual_seed(0), "cpu", torch.float32)
    assert abs((kept == 0).float().mean().item() - 0.25) < 0.005
    assert kept.unique().tolist() == [0.0, pytest.approx(4 / 3)]
    drop.eval()
    assert drop(x) is x


def caffe_pool(size: int, kernel: int, stride: int) -> int:
    """Caffe rounds pooled sizes up (PyTorch's ceil_mode)."""
    return math.ceil((size - kernel) / stride) + 1


def expected_sizes(m) -> list[int]:
    """Spatial size after each conv layer 1..5, as Caffe computes it."""
    s, out = m.input_size, []
    for i in range(5):
        s = (s + 2 * m.conv_padding[i] - m.conv_kernels[i]) // m.conv_strides[i] + 1
        if i in (0, 1, 4):
            s = caffe_pool(s, m.pool_kernel, m.pool_stride)
        out.append(s)
    return out


@pytest.mark.parametrize("preset, data, input_size", [("caffenet", "synthetic", 16), ("caffenet_cifar", "cifar100", 32),
                                                      ("caffenet_imagenet", "imagenet", 227)])
def test_output_shapes_of_every_preset(preset, data, input_size):
    m = compose([f"model={preset}", f"data={data}"]).model
    assert m.input_size == input_size  # follows the data
    model = build_model(m, num_classes=11).eval()
    x = torch.randn(2, 3, input_size, input_size)  # a tiny batch: the ImageNet preset is big
    sizes = expected_sizes(m)
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            x = layer(x)
            if i < 5:
                assert tuple(x.shape) == (2, m.conv_channels[i], sizes[i], sizes[i]), f"layer {i + 1}"
            elif i < 7:
                assert tuple(x.shape) == (2, m.fc_units[i - 5]), f"layer {i + 1}"
    assert tuple(x.shape) == (2, 11)
    assert model.feature_shape == (m.conv_channels[4], sizes[4], sizes[4])


def test_imagenet_preset_has_caffenets_feature_maps():
    """227 -> conv1 55 -> pool 27 -> conv2, pool 13 -> 13 -> 13 -> pool 6; grouped convs."""
    m = compose(["model=caffenet_imagenet", "data=imagenet"]).model
    model = build_model(m, num_classes=500).eval()
    x = torch.zeros(1, 3, 227, 227)
    with torch.no_grad():
        assert model.layers[0][0](x).shape[-1] == 55
        sizes = [(x := layer(x)).shape[-1] for layer in model.layers[:5]]
    assert sizes == [27, 13, 13, 13, 6]
    assert model.feature_shape == (256, 6, 6)
    convs = [weight_layer(layer) for layer in model.layers[:5]]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert tuple(convs[0].weight.shape) == (96, 3, 11, 11) and convs[0].stride == (4, 4)
    assert tuple(convs[1].weight.shape) == (256, 48, 5, 5)
    assert [weight_layer(layer).out_features for layer in model.layers[5:]] == [4096, 4096, 500]


# --------------------------------------------------------------------------- init, copy, freeze

def test_init_schemes_of_a_fresh_network():
    kaiming = build_model(compose([]).model, 10, torch.Generator().manual_seed(0))
    for i, layer in enumerate(kaiming.layers, 1):
        m = weight_layer(layer)
        fan_in = m.weight[0].numel()
        want = math.sqrt((2.0 if i < 8 else 1.0) / fan_in)
        assert m.weight.std().item() == pytest.approx(want, rel=0.1), f"layer {i}"
        assert torch.all(m.bias == (0.1 if i < 8 else 0.0))
    gaussian = build_model(compose(["model.init=gaussian"]).model, 10, torch.Generator().manual_seed(0))
    for i, layer in enumerate(gaussian.layers, 1):
        m = weight_layer(layer)
        assert m.weight.std().item() == pytest.approx(0.005 if i in (6, 7) else 0.01, rel=0.1)
        assert torch.all(m.bias == (1.0 if i in (2, 4, 5, 6, 7) else 0.0))
    with pytest.raises(ValueError, match="model.init"):
        build_model(compose(["model.init=xavier"]).model, 10)


def test_init_is_reproducible_from_the_generator():
    m = compose([]).model
    a, b, c = (build_model(m, 5, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.layers[0][0].weight, c.layers[0][0].weight)


def test_copy_layers_copies_exactly_the_first_n():
    m = compose([]).model
    src, dst = build_model(m, 5), build_model(m, 3)
    dst_before = snapshot(dst)
    copy_layers(dst, src, 4)
    for k, v in dst.state_dict().items():
        if layer_of(k) <= 4:
            assert torch.equal(v, src.state_dict()[k]), k
        else:
            assert torch.equal(v, dst_before[k]), k
    for n in (-1, 8):
        with pytest.raises(ValueError, match=f"n={n}"):
            copy_layers(dst, src, n)
    with pytest.raises(ValueError, match="shape"):
        copy_layers(dst, build_model(compose(["model=caffenet_cifar"]).model, 5), 1)


def test_freeze_layers_and_the_optimiser_groups():
    cfg = compose([])
    model = build_model(cfg.model, 5)
    freeze_layers(model, 5)
    for i, layer in enumerate(model.layers, 1):
        assert all(p.requires_grad == (i > 5) for p in layer.parameters()), f"layer {i}"
    held = {id(p) for g in param_groups(model, cfg.train) for p in g["params"]}
    assert held == {id(p) for p in layer_parameters(model, range(6, 9))}
    freeze_layers(model, 0)  # unfreezing works too (a fine-tuned cell)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_layers_still_apply_dropout_in_training():
    """Frozen = no weight update; the forward pass is unchanged (as Caffe's lr_mult = 0)."""
    model = build_model(compose([]).model, 5)
    freeze_layers(model, 7)
    model.train()
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    a = model(x, no_grad_prefix=7)
    assert not torch.equal(a, model(x, no_grad_prefix=7))
    model.eval()
    assert torch.equal(model(x), model(x))


# --------------------------------------------------------------------------- a real training run

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """baseA, baseB, A3B, A3B+ and B3B trained by the runner; each cell's weights before
    training (as the runner builds them) and after (its model.pt). Weight decay is on, so any
    frozen weight the optimiser held would move."""
    cfg = tiny_cfg("train.weight_decay=0.01")
    ctx = SweepContext(cfg, SweepStore(tmp_path_factory.mktemp("models")))
    out = {}
    for c in (cell("base", "A"), cell("base", "B"), cell("transfer"), cell("transfer_ft"), cell("selffer")):
        before = snapshot(build_cell_model(ctx, c))
        rec = run_cell(ctx, c, log=lambda m: None)
        assert rec["status"] == "done", rec.get("error")
        out[c.name] = (before, load_state(ctx.store.model_path(c.key)))
    return ctx, out


@pytest.mark.parametrize("name, base", [("A3B", "baseA"), ("B3B", "baseB")])
def test_frozen_layers_are_the_bases_bit_for_bit_after_training(trained, name, base):
    _, nets = trained
    before, after = nets[name]
    base_weights = nets[base][1]
    for k, v in after.items():
        if layer_of(k) <= N:
            assert torch.equal(v, before[k]), f"{name}: frozen {k} changed in training"
            assert torch.equal(v, base_weights[k]), f"{name}: {k} is not {base}'s"
        else:
            assert not torch.equal(v, before[k]), f"{name}: {k} above the frozen layers did not learn"


def test_finetuned_cell_starts_from_the_base_and_every_layer_learns(trained):
    _, nets = trained
    before, after = nets["A3B+"]
    for k, v in after.items():
        if layer_of(k) <= N:
            assert torch.equal(before[k], nets["baseA"][1][k]), f"{k} was not copied from baseA"
        assert not torch.equal(v, before[k]), f"fine-tuned {k} did not change"
    for name in ("baseA", "baseB"):  # a base learns in every layer too
        b, a = nets[name]
        assert all(not torch.equal(a[k], b[k]) for k in a), name


def test_upper_layers_are_reinitialised_like_a_fresh_network(trained):
    _, nets = trained
    fresh = nets["baseB"][0]  # a fresh network of the same task: the init of a new base
    for name, src in (("A3B", "baseA"), ("A3B+", "baseA"), ("B3B", "baseB")):
        before = nets[name][0]
        for k, v in before.items():
            if layer_of(k) <= N:
                continue
            assert not torch.equal(v, nets[src][1][k]), f"{name}: {k} still holds {src}'s weights"
            if k.endswith("bias"):  # constant biases: exactly the fresh value
                assert torch.equal(v, fresh[k]), f"{name}: {k}"
            else:  # drawn anew, from the same distribution as the fresh network's layer
                assert not torch.equal(v, nets[src][0][k]), f"{name}: {k} is {src}'s own init"
                assert v.std().item() == pytest.approx(fresh[k].std().item(), rel=0.15), f"{name}: {k}"
                assert abs(v.mean().item()) < 5 * v.std().item() / math.sqrt(v.numel()), f"{name}: {k}"


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
@pytest.mark.parametrize("n", [1, 5, 7])
def test_reinit_uses_the_models_init_scheme(tmp_path, init, n):
    """Without training: a saved base, then build_cell_model for AnB."""
    cfg = tiny_cfg(f"model.init={init}")
    ctx = SweepContext(cfg, SweepStore(tmp_path))
    k_a = ctx.task("A", 0).num_classes
    base = build_model(cfg.model, k_a, torch.Generator().manual_seed(123))
    with torch.no_grad():  # a "trained" base: nothing like a fresh init
        for p in base.parameters():
            p.add_(1.0)
    atomic_torch_save(ctx.store.model_path(cell("base", "A").key), base.state_dict())
    model = build_cell_model(ctx, cell("transfer", n=n))
    fresh = build_model(cfg.model, ctx.task("B", 0).num_classes, torch.Generator().manual_seed(7))
    for i, (layer, ref) in enumerate(zip(model.layers, fresh.layers), 1):
        w, wf = weight_layer(layer), weight_layer(ref)
        if i <= n:
            assert torch.equal(w.weight, weight_layer(base.layers[i - 1]).weight)
            assert all(not p.requires_grad for p in layer.parameters())
        else:
            assert torch.equal(w.bias, wf.bias), f"layer {i} bias"
            assert w.weight.std().item() == pytest.approx(wf.weight.std().item(), rel=0.15), f"layer {i}"
            assert all(p.requires_grad for p in layer.parameters())


@pytest.mark.parametrize("feature_cache", ["auto", "false"])
def test_optimiser_holds_no_frozen_parameter(tmp_path, monkeypatch, feature_cache):
    """Spy on the optimiser the trainer builds: only layers n+1..8 are in it, and after training
    with strong weight decay the frozen layers are unchanged."""
    seen = []

    class SpySGD(torch.optim.SGD):
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            seen.append({id(p) for g in self.param_groups for p in g["params"]})

    monkeypatch.setattr(torch.optim, "SGD", SpySGD)
    cfg = tiny_cfg("train.weight_decay=0.1", f"train.feature_cache={feature_cache}")
    ctx = SweepContext(cfg, SweepStore(tmp_path))
    task = ctx.task("B", 0)
    model = build_model(cfg.model, task.num_classes, torch.Generator().manual_seed(0))
    freeze_layers(model, 4)
    before = snapshot(model)
    batches = make_batches(task, ctx.dataset.mean, ctx.dataset.std, torch.device("cpu"), 8)
    train(model, batches, cfg.train, frozen_layers=4, seed=0, log=lambda m: None)
    assert seen == [{id(p) for p in layer_parameters(model, range(5, 9))}]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) == (layer_of(k) <= 4), k


# --------------------------------------------------------------------------- determinism

def train_base(root, *overrides):
    cfg = tiny_cfg(*overrides)
    ctx = SweepContext(cfg, SweepStore(root))
    c = Cell("base", "B", 0, "random", 0, int(cfg.seed))
    rec = run_cell(ctx, c, log=lambda m: None)
    assert rec["status"] == "done", rec.get("error")
    return rec, load_state(ctx.store.model_path(c.key))


def test_same_seed_gives_bit_identical_weights_and_metrics(tmp_path):
    rec1, w1 = train_base(tmp_path / "one", "train.epochs=2")
    rec2, w2 = train_base(tmp_path / "two", "train.epochs=2")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert without_timing(rec1["metrics"]) == without_timing(rec2["metrics"])
    assert without_timing(rec1["history"]) == without_timing(rec2["history"])
    rec3, w3 = train_base(tmp_path / "three", "train.epochs=2", "seed=1")
    assert rec3["seeds"]["train"] == 1
    assert all(not torch.equal(w1[k], w3[k]) for k in w1 if k.endswith("weight"))
    assert rec3["metrics"]["val_loss"] != rec1["metrics"]["val_loss"]

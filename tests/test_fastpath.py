"""The fast paths change speed, never results: LRN, batched augmentation, the frozen-prefix
feature cache, channels_last; and the benchmark's pieces work."""
import copy

import pytest
from conftest import task_setup, tiny
import torch
from torch import nn

from transferlab.config import compose
from transferlab.features import FeatureBatches, cache_depth, feature_batches
from transferlab.models import build_model, copy_layers, freeze_layers
from transferlab.models.lrn import LocalResponseNorm
from transferlab.train import TensorBatches, augment, make_batches, train

TINY = ["data.train_per_class=20", "data.val_per_class=6", "train.epochs=2"]


@pytest.fixture(scope="module")
def setup():
    return task_setup(*TINY)


def _train_cell(setup, n, frozen, **train_overrides):
    cfg, ds, task, source = setup
    tcfg = copy.deepcopy(cfg.train)
    for k, v in train_overrides.items():
        tcfg[k] = v
    model = build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(2))
    copy_layers(model, source, n)
    freeze_layers(model, frozen)
    batches = make_batches(task, ds.mean, ds.std, torch.device("cpu"), cfg.train.batch_size, cfg.data.augment)
    result = train(model, batches, tcfg, frozen_layers=frozen, seed=3, log=lambda m: None)
    return model, result


# --- LRN --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 4, 5])
def test_lrn_matches_torch_forward_and_gradient(size):
    x = torch.randn(3, 9, 4, 5, dtype=torch.float64, requires_grad=True)
    ours = LocalResponseNorm(size, alpha=0.5, beta=0.75, k=1.5)
    ref = nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=1.5)
    assert torch.autograd.gradcheck(ours, (x,))
    g = torch.randn(3, 9, 4, 5, dtype=torch.float64)
    (gx_ours,) = torch.autograd.grad(ours(x), x, g)
    (gx_ref,) = torch.autograd.grad(ref(x), x, g)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx_ours, gx_ref, rtol=1e-10, atol=1e-12)


def test_lrn_float32_channels_last_and_deterministic():
    x = (torch.randn(4, 16, 6, 6) * 3).contiguous(memory_format=torch.channels_last)
    ours, ref = LocalResponseNorm(5, 1e-2), nn.LocalResponseNorm(5, 1e-2)
    torch.testing.assert_close(ours(x), ref(x))
    assert torch.equal(ours(x), ours(x.contiguous()))
    assert torch.equal(ours(x), ours(x))


# --- augmentation -------------------------------------------------------------------------------

@pytest.mark.parametrize("pad,flip", [(0, True), (3, False), (3, True)])
def test_augment_is_a_random_crop_and_flip(pad, flip):
    x = torch.randint(0, 256, (10, 3, 7, 9), dtype=torch.uint8)
    out = augment(x, pad, flip, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same draws, in the same order
    oy = torch.randint(0, 2 * pad + 1, (10,), generator=g) if pad else torch.zeros(10, dtype=torch.long)
    ox = torch.randint(0, 2 * pad + 1, (10,), generator=g) if pad else torch.zeros(10, dtype=torch.long)
    mirror = torch.rand(10, generator=g) < 0.5 if flip else torch.zeros(10, dtype=torch.bool)
    for b in range(10):
        padded = torch.nn.functional.pad(x[b], (pad, pad, pad, pad))
        want = padded[:, oy[b]:oy[b] + 7, ox[b]:ox[b] + 9]
        assert torch.equal(out[b], want.flip(2) if mirror[b] else want), b
    if flip:
        assert 0 < int(mirror.sum()) < 10


# --- feature cache ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_cached_and_uncached_training_give_identical_weights(setup, n):
    plain, r_plain = _train_cell(setup, n, n, feature_cache=False)
    cached, r_cached = _train_cell(setup, n, n, feature_cache="auto")
    assert r_plain["feature_cache_layers"] == 0
    assert r_cached["feature_cache_layers"] == min(n, 5)  # dropout of layers 6, 7 stays on the fly
    a, b = plain.state_dict(), cached.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert r_plain["history"] == [{**h, "time": r_plain["history"][i]["time"]}
                                  for i, h in enumerate(r_cached["history"])]


def test_no_cache_for_trainable_prefix_or_random_input(setup):
    _, r = _train_cell(setup, 3, 0, feature_cache="auto")  # fine-tuned: nothing frozen
    assert r["feature_cache_layers"] == 0
    cfg, ds, task, source = setup
    model = build_model(cfg.model, task.num_classes)
    freeze_layers(model, 3)
    augmented = TensorBatches(task.train, task.val, ds.mean, ds.std, torch.device("cpu"), 32, crop_padding=2)
    assert feature_batches(model, augmented, 3, "auto") is augmented
    with pytest.raises(ValueError, match="feature_cache=true"):
        feature_batches(model, augmented, 3, True)
    with pytest.raises(ValueError, match="allowed: auto, true, false"):
        feature_batches(model, augmented, 3, "sometimes")


def frozen_with_images(setup, n):
    """A fresh network with layers 1..n frozen, and batches of 16 training images of task B."""
    cfg, ds, task, _ = setup
    model = build_model(cfg.model, task.num_classes)
    freeze_layers(model, n)
    return model, make_batches(task, ds.mean, ds.std, torch.device("cpu"), 16)


def test_feature_batches_draw_like_image_batches(setup):
    model, images = frozen_with_images(setup, 2)
    feats = feature_batches(model, images, 2, "auto", log=lambda m: None)
    assert isinstance(feats, FeatureBatches) and feats.model_kwargs == {"start": 2}
    assert feats.steps_per_epoch == images.steps_per_epoch
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    model.eval()
    with torch.no_grad():
        for (x, y), (h, yh) in zip(images.epoch(g1), feats.epoch(g2)):
            assert torch.equal(y, yh)
            assert torch.equal(model.forward_prefix(x, 2), h)


def test_cache_depth_stops_at_dropout(setup):
    cfg, _, task, _ = setup
    model = build_model(cfg.model, task.num_classes)
    assert [cache_depth(model, n) for n in range(8)] == [0, 1, 2, 3, 4, 5, 5, 5]


# --- reproducibility, switches, memory --------------------------------------------------------

def test_cpu_training_is_bit_reproducible_with_channels_last(setup):
    a, ra = _train_cell(setup, 0, 0)
    b, rb = _train_cell(setup, 0, 0)
    assert ra["fast_path"]["channels_last"] and ra["precision"] == "fp32"
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_bad_switch_is_rejected(setup):
    with pytest.raises(ValueError, match="train.channels_last='yes'"):
        _train_cell(setup, 0, 0, channels_last="yes")


def test_batches_share_the_dataset(setup):
    cfg, ds, task, _ = setup
    a = make_batches(task, ds.mean, ds.std, torch.device("cpu"), 16)
    b = make_batches(task, ds.mean, ds.std, torch.device("cpu"), 32)
    assert a.train.x.data_ptr() == b.train.x.data_ptr() == task.train.x.data_ptr()


# --- benchmark pieces -------------------------------------------------------------------------

def test_reference_loop_and_flop_count(setup):
    from transferlab.bench import reference_cell, step_flops

    cfg, ds, task, source = setup
    cfg = copy.deepcopy(cfg)
    cfg.train.epochs = 1
    model = build_model(cfg.model, task.num_classes)
    freeze_layers(model, 5)
    before = [p.clone() for p in model.layers[0].parameters()]
    r = reference_cell(model, task, cfg, ds.mean, ds.std, torch.device("cpu"), epochs=1)
    assert r["steps"] == len(task.train) // cfg.train.batch_size and r["wall"] >= r["step_time"] > 0
    assert all(torch.equal(p, q) for p, q in zip(before, model.layers[0].parameters()))
    x, y = torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)
    full = step_flops(build_model(cfg.model, task.num_classes), 0, 0, x, y, torch.device("cpu"), "fp32")
    frozen = step_flops(model, 5, 0, x, y, torch.device("cpu"), "fp32")
    assert full > frozen > 0


def test_the_torch_nn_reference_network_computes_the_same_function(setup):
    """The bench's "plain, torch.nn layers" side: nn.LocalResponseNorm, nn.Dropout and Caffe's
    ReLU-then-pool order, with the same weights: the same function as ours."""
    from transferlab.bench import torch_nn_network
    from transferlab.models.lrn import LocalResponseNorm

    cfg, _, task, _ = setup
    model = build_model(cfg.model, task.num_classes).eval()
    ref = torch_nn_network(model).eval()
    kinds = {type(m) for m in ref.modules()}
    assert nn.LocalResponseNorm in kinds and nn.Dropout in kinds and LocalResponseNorm not in kinds
    first = [type(m) for m in ref.layers[0]]
    assert first.index(nn.ReLU) < first.index(nn.MaxPool2d)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), model(x), rtol=1e-4, atol=1e-5)

def test_compiled_graphs_are_reused_by_later_cells(setup):
    """A new cell (new module instance) of the same shapes reuses the graph; a new frozen
    prefix gets its own. (backend="eager": the caching is dynamo's, the backend is irrelevant.)"""
    from torch._dynamo.utils import counters

    from transferlab.train import compiled

    cfg, _, task, _ = setup
    x, y = torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)

    def cell(frozen):
        m = build_model(cfg.model, task.num_classes)
        freeze_layers(m, frozen)
        torch.nn.functional.cross_entropy(compiled(m, backend="eager")(x, no_grad_prefix=frozen), y).backward()
        return counters["stats"]["unique_graphs"]

    first = cell(0)
    assert cell(0) == first
    assert cell(2) == first + 1
    assert cell(2) == cell(0) == first + 1


class BatchDependentPrefix(nn.Module):
    """A frozen prefix whose output depends on the rest of the batch (as BatchNorm's would in
    training mode, or a CUDA kernel chosen per batch shape): the cache must notice."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.layers = net.layers

    def forward_prefix(self, x, n):
        return self.net.forward_prefix(x, n) + x.mean() * 1e-3


def test_a_cache_that_is_not_exact_is_refused_unless_forced(setup):
    model, images = frozen_with_images(setup, 3)
    exact = feature_batches(model, images, 3, "auto", log=lambda m: None)
    assert exact.check == {"max_relative_difference": 0.0, "tolerance": 0.0, "exact": True}

    odd, logs = BatchDependentPrefix(model), []
    assert feature_batches(odd, images, 3, "auto", log=logs.append) is images
    assert logs[-1].startswith("feature cache off: the frozen layers' outputs depend on the batch")
    with pytest.raises(ValueError, match="feature_cache=true.*use train.feature_cache=force"):
        feature_batches(odd, images, 3, True, log=logs.append)
    forced = feature_batches(odd, images, 3, "force", log=logs.append)
    assert isinstance(forced, FeatureBatches) and forced.check["exact"] is False
    assert 0 < forced.check["max_relative_difference"] and "forced" in logs[-1]


def test_the_cache_check_runs_on_every_device_with_a_tolerance_off_the_cpu():
    from transferlab.features import tolerance

    assert tolerance(torch.device("cpu"), "fp32") == tolerance(torch.device("cpu"), "bf16") == 0.0
    assert 0 < tolerance(torch.device("cuda"), "fp32") < tolerance(torch.device("cuda"), "bf16") < 0.05


def test_the_bench_plain_sweep_trains_the_sweeps_networks(monkeypatch):
    """The plain side of the whole-sweep comparison trains the plan's networks, each cell built
    from the base the plain loop itself trained (its layers 1..n copied, the rest fresh)."""
    from transferlab.bench import sweeps as bench
    from transferlab.cells import plan

    small = tiny("data.train_per_class=16", "data.val_per_class=4", "n=1,2")
    real_compose = bench.compose
    monkeypatch.setattr(bench, "compose", lambda ov: real_compose(list(ov) + small))
    seen = {}

    def fake_training(model, task, cfg, mean, std, device, epochs, kind="plain"):
        with torch.no_grad():  # "training": every weight moves, so a copy is told from a fresh init
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(1.0)
        seen[len(seen)] = model
        return {"wall": 0.0, "step_time": 0.0, "steps": 0, "val_top1": 0.5}

    monkeypatch.setattr(bench, "reference_cell", fake_training)
    out = bench.plain_sweep(torch.device("cpu"))
    names = [c.name for c in plan(real_compose(small))]
    assert sorted(out["val_top1"]) == sorted(names) and out["networks"] == len(names)
    nets = dict(zip(names, seen.values()))
    w = lambda name, i: nets[name].layers[i - 1][0].weight  # noqa: E731
    assert torch.equal(w("A2B", 1), w("baseA", 1)) and torch.equal(w("A2B", 2), w("baseA", 2))
    assert not torch.equal(w("A2B", 3), w("baseA", 3))               # re-initialised above n
    assert torch.equal(w("B1B", 1), w("baseB", 1)) and not torch.equal(w("B1B", 1), w("baseA", 1))
    assert all(not p.requires_grad for p in nets["A2B"].layers[:2].parameters())   # frozen
    assert all(p.requires_grad for p in nets["A2B+"].parameters())                 # fine-tuned


def test_the_bench_image_folder_trains_the_same_images_three_ways(monkeypatch):
    """bench/folder.py: the embedded images as PNG files, trained in memory, from disk and as tensors."""
    import torch

    from transferlab.bench import folder

    monkeypatch.setattr(folder, "TRAIN", 4)
    monkeypatch.setattr(folder, "VAL", 2)
    monkeypatch.setitem(folder.SIDES, "embedded tensors",
                        [o.replace("=63", "=4").replace("=15", "=2") for o in folder.SIDES["embedded tensors"]])
    r = folder.compare(torch.device("cpu"), epochs=1, repeat=1)
    assert r["files"] == 32 * 6 and set(r["images_per_s"]) == set(folder.SIDES)
    assert all(v > 0 for v in r["images_per_s"].values()) and r["memory_over_disk"] > 0
    assert "folder in memory" in folder.describe(r)

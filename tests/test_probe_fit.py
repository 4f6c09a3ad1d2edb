"""Linear probes on frozen features: they decode what is linearly there and no more, choose their
penalty on held-out training rows (never on validation), and pool any unit's activations to a
bounded number of features."""
import json

import pytest
import torch
import torch.nn.functional as F

from transferlab import probe
from transferlab.probe import fit_probe, pool

L2S = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Probes this small gain nothing from a second thread, and on a busy 2-core machine every
    parallel region can wait a scheduler time slice for its other thread: measured 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clusters(n, classes=4, signal=20, noise=40, spread=10.0, seed=0):
    """n rows: class means `spread` apart in `signal` dims (small noise there), plus `noise`
    dims of pure unit noise that carry nothing but let a probe memorise rows."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, signal, generator=torch.Generator().manual_seed(1234)) * spread
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.cat([means[y] + 0.1 * torch.randn(n, signal, generator=g),
                   torch.randn(n, noise, generator=g)], 1)
    return x, y


def weak(n, classes=4, dims=100, seed=0):
    """n rows whose classes overlap: means 0.25 apart per dim in `dims` unit-noise dims."""
    g = torch.Generator().manual_seed(seed)
    means = 0.25 * torch.randn(classes, dims, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, classes, (n,), generator=g)
    return means[y] + torch.randn(n, dims, generator=g), y


def without_time(result):
    return {k: v for k, v in result.items() if k != "fit_time"}


# --------------------------------------------------------------------------- what a probe decodes

@pytest.mark.parametrize("method", probe.METHODS)
def test_separable_features_are_decoded(method):
    dead = torch.zeros(600, 1)  # a constant feature (a dead ReLU) must not turn into NaN
    x, y = clusters(200)
    vx, vy = clusters(400, seed=1)
    r = fit_probe(torch.cat([x, dead[:200]], 1), y, torch.cat([vx, dead[:400]], 1), vy, 4, method=method)
    assert r["metrics"]["val_top1"] >= 0.99
    assert (r["features"], r["train_images"], r["holdout_images"]) == (61, 200, 40)
    assert [s["l2"] for s in r["search"]] == sorted(L2S, reverse=True)
    json.dumps(r)  # plain values only


@pytest.mark.parametrize("method", probe.METHODS)
def test_shuffled_labels_are_memorised_but_not_decoded(method):
    x, y = clusters(200)
    vx, vy = clusters(800, seed=1)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))]
    m = fit_probe(x, shuffled, vx, vy, 4, method=method)["metrics"]
    assert m["val_top1"] < 0.35  # chance is 0.25
    assert m["val_top5"] == 1.0  # top-min(5, 4): every label is among 4 of 4
    assert m["train_top1"] > m["val_top1"] + 0.2


@pytest.mark.parametrize("method", probe.METHODS)
def test_strong_penalty_fits_the_training_rows_less(method):
    x, y = weak(200)
    vx, vy = weak(200, seed=1)
    big = 10.0 if method == "softmax" else 1e3  # ridge's argmax ignores a uniform shrink: it takes more
    strong = fit_probe(x, y, vx, vy, 4, l2=(big,), method=method)
    loose = fit_probe(x, y, vx, vy, 4, l2=(1e-5,), method=method)
    assert strong["metrics"]["train_top1"] < loose["metrics"]["train_top1"] - 0.1
    # Standardised features: the penalty means the same whatever the activations' scale.
    rescaled = fit_probe(x * 1000 + 5, y, vx * 1000 + 5, vy, 4, l2=(big,), method=method)
    loss = "train_loss" if method == "softmax" else "train_mse"
    assert rescaled["metrics"][loss] == pytest.approx(strong["metrics"][loss], rel=1e-3)
    assert strong["search"] == [] and strong["holdout_images"] == 0 and strong["l2"] == big


# --------------------------------------------------------------------------- the penalty's choice

def chosen_by_holdout(search):
    """The rule: best held-out top-1, then lower held-out loss, then larger l2."""
    return max(search, key=lambda s: (s["holdout_top1"], -s["holdout_loss"], s["l2"]))["l2"]


@pytest.mark.parametrize("method", probe.METHODS)
def test_the_penalty_is_chosen_on_the_holdout_not_on_validation(method):
    x, y = weak(150)
    vx, vy = weak(400, seed=1)
    r = fit_probe(x, y, vx, vy, 4, method=method)
    assert len({s["holdout_top1"] for s in r["search"]}) > 1  # the choice is not a trivial tie
    assert r["l2"] == chosen_by_holdout(r["search"])
    # Validation sets that would favour other penalties: the training rows themselves reward
    # memorising (the smallest l2), unrelated rows reward nothing. Neither may change the probe.
    assert r["l2"] != min(L2S)
    for other_x, other_y in ((x, y), (7 * weak(50, seed=7)[0], torch.arange(50) % 4)):
        s = fit_probe(x, y, other_x, other_y, 4, method=method)
        assert (s["l2"], s["search"], s["iterations"]) == (r["l2"], r["search"], r["iterations"])
        assert [s["metrics"].get(k) for k in ("train_top1", "train_loss", "train_mse")] == \
               [r["metrics"].get(k) for k in ("train_top1", "train_loss", "train_mse")]


def test_ties_on_holdout_accuracy_go_to_the_lower_loss_then_the_larger_penalty(monkeypatch):
    # Scripted held-out scores (the search scores its fits first, in order): three tie on
    # top-1, two of those on loss too; the larger of the two l2 must win.
    script = iter([(0.5, 1.0, 1.0), (0.8, 1.0, 0.9), (0.8, 1.0, 0.7), (0.8, 1.0, 0.7)])
    real = probe._evaluate
    monkeypatch.setattr(probe, "_evaluate", lambda *a: next(script, None) or real(*a))
    x, y = weak(150)
    r = fit_probe(x, y, x, y, 4, l2=(1e-4, 1e-1, 1e-3, 1e-2))
    assert [(s["l2"], s["holdout_top1"], s["holdout_loss"]) for s in r["search"]] == \
           [(1e-1, 0.5, 1.0), (1e-2, 0.8, 0.9), (1e-3, 0.8, 0.7), (1e-4, 0.8, 0.7)]
    assert r["l2"] == 1e-3


@pytest.mark.parametrize("method", probe.METHODS)
def test_a_probe_is_deterministic(method):
    x, y = weak(200)
    vx, vy = weak(100, seed=1)
    assert without_time(fit_probe(x, y, vx, vy, 4, method=method)) == \
        without_time(fit_probe(x, y, vx, vy, 4, method=method))


@pytest.mark.parametrize("change, named", [
    (dict(holdout=1.5), "holdout=1.5 must be in (0, 1)"),
    (dict(l2=()), "l2=()"),
    (dict(l2=(1e-3, -1.0)), "-1.0"),
    (dict(num_classes=1), "num_classes=1"),
    (dict(train_y=torch.tensor([0, 1, 2, 4] * 10)), "0..4"),
    (dict(val_y=torch.tensor([-1, 0, 1, 2] * 5)), "-1..2"),
    (dict(train_x=torch.randn(39, 8)), "(39, 8)"),
    (dict(val_x=torch.randn(20, 9)), "9 features"),
    (dict(train_x=torch.randn(2, 8), train_y=torch.tensor([0, 1])), "1 of 2"),
])
def test_unusable_arguments_are_refused_by_name(change, named):
    torch.manual_seed(0)
    args = dict(train_x=torch.randn(40, 8), train_y=torch.tensor([0, 1, 2, 3] * 10),
                val_x=torch.randn(20, 8), val_y=torch.tensor([0, 1, 2, 3] * 5), num_classes=4)
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        fit_probe(**{**args, **change})


# --------------------------------------------------------------------------- pooling

def test_pool_keeps_what_fits_and_averages_the_rest():
    torch.manual_seed(0)
    flat = torch.randn(3, 10, dtype=torch.float64)
    assert pool(flat).dtype == torch.float32 and torch.equal(pool(flat), flat.float())
    maps = torch.randn(3, 24, 7, 7)
    assert torch.equal(pool(maps), maps.flatten(1))  # 24*7*7 = 1176 <= 4096: kept
    assert pool(maps, max_features=100).shape == (3, 96)  # k=2: 24*2*2
    assert torch.allclose(pool(maps, max_features=100), F.adaptive_avg_pool2d(maps, 2).flatten(1),
                          atol=1e-6)
    wide = torch.randn(3, 512, 2, 2)  # 512 > 256 already: global pooling all the same
    assert torch.allclose(pool(wide, max_features=256), wide.mean((2, 3)), atol=1e-6)
    tokens = torch.randn(3, 10, 8)
    assert torch.equal(pool(tokens), tokens.flatten(1))
    halves = pool(tokens, max_features=16)  # k=2 groups of 5 tokens, in order
    groups = torch.cat([tokens[:, :5].mean(1), tokens[:, 5:].mean(1)], 1)
    assert torch.allclose(halves, groups, atol=1e-6)
    assert pool(tokens, max_features=4).shape == (3, 8)  # one group: the mean token
    with pytest.raises(ValueError, match=r"\(3, 2, 2, 2, 2\)"):
        pool(torch.randn(3, 2, 2, 2, 2))


def test_ridge_is_the_closed_form_least_squares_solution():
    """The ridge probe solves (z^T z + N l2 I) W = z^T (Y - mean Y) on standardised features."""
    x, y = weak(120, dims=10)
    r = fit_probe(x, y, x, y, 4, l2=(0.3,), method="ridge")
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    Y = F.one_hot(y, 4).double()
    W = torch.linalg.solve(z.double().T @ z.double() + 120 * 0.3 * torch.eye(10, dtype=torch.float64),
                           z.double().T @ (Y - Y.mean(0)))
    pred = (z.double() @ W + Y.mean(0)).argmax(1)
    assert r["metrics"]["train_top1"] == pytest.approx((pred == y).double().mean().item())
    mse = (z.double() @ W + Y.mean(0) - Y).pow(2).sum(1).mean().item()
    assert r["metrics"]["train_mse"] == pytest.approx(mse, rel=1e-4)
    assert r["metrics"]["val_loss"] is None and r["method"] == "ridge"
    with pytest.raises(ValueError, match="method='lasso' is not valid; allowed: ridge, softmax"):
        fit_probe(x, y, x, y, 4, method="lasso")



def test_ridge_solves_in_float64_where_float32_rounding_breaks_cholesky(monkeypatch):
    """Strongly correlated features (seen on a real image folder: conv1's 1,536 pooled features of
    800 images, largest eigenvalue 4e5) leave the float32 Gram matrix indefinite by about 0.01,
    more than N * l2 = 0.008 adds: Cholesky fails. The probe then forms it in float64. Here the
    first factorisation is made to fail, and the result must be the float64 solution."""
    x, y = weak(150, dims=30)
    calls = []
    real = torch.linalg.cholesky_ex

    def first_fails(A):
        calls.append(A)
        L, info = real(A)
        return (L, torch.ones_like(info)) if len(calls) == 1 else (L, info)

    want = fit_probe(x, y, x, y, 4, l2=(1e-5,), method="ridge")
    monkeypatch.setattr(torch.linalg, "cholesky_ex", first_fails)
    got = fit_probe(x, y, x, y, 4, l2=(1e-5,), method="ridge")
    assert len(calls) == 1  # then torch.linalg.cholesky on the float64 Gram matrix
    assert got["metrics"]["train_top1"] == want["metrics"]["train_top1"]
    assert got["metrics"]["train_mse"] == pytest.approx(want["metrics"]["train_mse"], rel=1e-5)

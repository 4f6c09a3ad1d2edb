"""Pretrained sources (PnB, PnB+): a cell's first n units come from the checkpoint of
model.weights (a torchvision state_dict file, a torchvision weights name found in torchvision's
local cache, or a state_dict of our own unit network) instead of a base of the sweep; the head
is always new; records name the file and its SHA-256; bad weights are refused before anything
is written; the analysis and Figure 2 show them beside the other treatments."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pandas as pd
import pytest
import torch
import torchvision
from conftest import tiny, tiny_cfg
from fake_sweep import FT, accuracy, make_sweep

from transferlab import analysis, reference, sweep
from transferlab import treatments as T
from transferlab.cells import Cell, plan
from transferlab.models import build_model
from transferlab.runner import SweepContext, build_cell_model, run_cell
from transferlab.store import SweepStore, file_sha256, load_state

RESNET = ["model=resnet18", "n=2"]
# Our resnet18's units 1..3 and the torchvision keys they hold.
UNIT_KEYS = {"layers.0.0.": "conv1.", "layers.0.1.": "bn1.", "layers.1.": "layer1.0.", "layers.2.": "layer1.1."}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sweep.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def torchvision_state(seed: int = 0, cifar: bool = False) -> dict:
    """A torchvision resnet18 state_dict with 1000 classes, BatchNorm parameters and running
    statistics drawn too (so copies of them can be told from a fresh network's)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = torchvision.models.resnet18(num_classes=1000)
        if cifar:
            m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        g = torch.Generator().manual_seed(seed + 1)
        for k, v in m.state_dict().items():
            if k.endswith(("bn1.weight", "bn2.weight", "running_var", "downsample.1.weight")):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif k.endswith(("bn1.bias", "bn2.bias", "running_mean", "downsample.1.bias")):
                v.copy_(torch.randn(v.shape, generator=g))
            elif k.endswith("num_batches_tracked"):
                v.fill_(7)
    return m.state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision_state(), path)
    return path


def checkpoint_tensor(state: dict, key: str) -> torch.Tensor | None:
    """The checkpoint's tensor for one of our units' keys (units 1..3 of resnet18)."""
    for ours, theirs in UNIT_KEYS.items():
        if key.startswith(ours):
            return state[theirs + key[len(ours):]]
    return None


def context(tmp_path, *overrides):
    cfg = tiny_cfg(*RESNET, *overrides, f"results_dir={tmp_path}")
    return SweepContext(cfg, SweepStore(tmp_path / "sweep"))


def test_pretrained_treatments_are_rows_of_the_table_and_need_no_base(weights):
    assert T.get("pretrained").label == "PnB" and T.get("pretrained_ft").label == "PnB+"
    assert {"PnB", "PnB+"} <= set(T.FIGURE2) and {"PnB", "PnB+"} <= set(T.LABELS)
    styles = {(t.face, t.marker) for t in T.TABLE}
    assert len(styles) == len(T.TABLE)  # a colour and marker of their own
    assert T.get("pretrained").legend == "pretrained PnB" and T.get("pretrained_ft").legend == "pretrained PnB$^+$"
    cfg = tiny_cfg(*RESNET, "n=1,2", f"model.weights={weights}", "treatments=[pretrained,pretrained_ft]",
                   "directions=[A,B]")
    cells = plan(cfg)
    assert [c.name for c in cells] == ["baseA", "baseB", "P1A", "P1A+", "P2A", "P2A+", "P1B", "P1B+", "P2B", "P2B+"]
    p = [c for c in cells if c.treatment != "base"]
    assert all(c.base_dependency is None and c.source == "pretrained" for c in p)
    assert [c.frozen_layers for c in p[:2]] == [1, 0]
    assert Cell("pretrained", "B", 2, "random", 0, 0).as_dict()["label"] == "PnB"
    # The original study's CSV has no pretrained networks: its mapping still reads.
    assert not reference.networks().label.isin(["PnB", "PnB+"]).any()


def test_units_1_to_n_are_the_checkpoints_and_the_rest_is_new(tmp_path, weights):
    ctx = context(tmp_path, f"model.weights={weights}", "treatments=[pretrained]")
    state = torch.load(weights, weights_only=True)
    model = build_cell_model(ctx, Cell("pretrained", "B", 2, "random", 0, 0))
    copied = later = 0
    for key, t in model.state_dict().items():
        theirs = checkpoint_tensor(state, key)
        unit = int(key.split(".")[1])
        if unit < 2:
            assert theirs is not None and torch.equal(t, theirs), key
            copied += 1
        elif unit == 2 and t.is_floating_point():  # unit 3: re-initialised, not the checkpoint's
            assert not torch.equal(t, theirs), key
            later += 1
    assert copied == sum(k.startswith(("conv1.", "bn1.", "layer1.0.")) for k in state) and later
    assert model.layers[-1][-1].out_features == ctx.task("B", 0).num_classes == 3  # a new head for B
    assert [all(not p.requires_grad for p in u.parameters()) for u in model.layers[:3]] == [True, True, False]


def test_frozen_units_stay_the_checkpoints_and_fine_tuned_ones_move(tmp_path, weights):
    ctx = context(tmp_path, f"model.weights={weights}", "treatments=[pretrained,pretrained_ft]")
    state = torch.load(weights, weights_only=True)
    moved = {}
    for treatment in ("pretrained", "pretrained_ft"):
        cell = Cell(treatment, "B", 2, "random", 0, 0)
        rec = run_cell(ctx, cell, log=lambda m: None)
        assert rec["status"] == "done", rec.get("error")
        assert rec["source"] == "pretrained" and rec["source_key"] is None
        assert rec["source_sha256"] == file_sha256(weights)
        assert rec["source_weights"] == {"weights": str(weights), "path": str(weights)}
        trained = load_state(ctx.store.model_path(cell.key))
        same = [torch.equal(v, checkpoint_tensor(state, k)) for k, v in trained.items() if int(k.split(".")[1]) < 2]
        moved[cell.name] = not all(same)
    assert moved == {"P2B": False, "P2B+": True}


@pytest.mark.parametrize("arch", ["caffenet", "resnet18"])
def test_a_state_dict_of_our_own_network_is_a_source_too(tmp_path, arch):
    """E.g. a base's model.pt of another sweep: keys layers.<i>.... as our units name them."""
    cfg = tiny_cfg(f"model={arch}")
    source = build_model(cfg.model, 10, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "ours.pt"
    torch.save(source.state_dict(), path)
    ctx = SweepContext(tiny_cfg(f"model={arch}", f"model.weights={path}", "treatments=[pretrained]"),
                       SweepStore(tmp_path / "sweep"))
    model = build_cell_model(ctx, Cell("pretrained", "B", 2, "random", 0, 0))
    theirs = source.state_dict()
    for key, t in model.state_dict().items():
        unit = int(key.split(".")[1])
        if unit < 2 or (unit == 2 and t.is_floating_point() and t.unique().numel() > 1):  # not a constant init
            assert torch.equal(t, theirs[key]) == (unit < 2), key


def test_resnet18_cifar_takes_a_checkpoint_with_its_small_stem(tmp_path):
    path = tmp_path / "cifar.pth"
    torch.save(torchvision_state(cifar=True), path)
    ctx = SweepContext(tiny_cfg("model=resnet18_cifar", f"model.weights={path}", "treatments=[pretrained_ft]"),
                       SweepStore(tmp_path / "sweep"))
    model = build_cell_model(ctx, Cell("pretrained_ft", "B", 1, "random", 0, 0))
    assert torch.equal(model.layers[0][0].weight, torch.load(path, weights_only=True)["conv1.weight"])


def other_architecture(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), path)
    return path


def garbage(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    return path


def imagenet_stem(tmp_path):  # resnet18's 7x7 stem for resnet18_cifar's 3x3 one
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_state(), path)
    return path


@pytest.mark.parametrize("make, extra, words", [
    (None, [], ["model.weights", "pretrained"]),
    (lambda p: p / "nowhere" / "missing.pth", [], ["does not exist", "missing.pth"]),
    (garbage, [], ["garbage.pth", "state_dict"]),
    (other_architecture, [], ["resnet18", "missing", "conv1.weight", "unexpected", "features.0.0.weight"]),
    (imagenet_stem, ["model=resnet18_cifar"], ["conv1.weight", "(64, 3, 7, 7)", "(64, 3, 3, 3)"]),
], ids=["no-weights", "missing-file", "not-a-checkpoint", "other-architecture", "other-stem"])
def test_bad_weights_are_refused_before_anything_is_written(tmp_path, make, extra, words):
    weights = [] if make is None else [f"model.weights={make(tmp_path)}"]
    rc, out, err = run(*tiny(*RESNET, *extra, *weights, "treatments=[pretrained]", f"results_dir={tmp_path / 'r'}"))
    assert rc == 2, out + err
    assert err.startswith("error: ") and all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


URL_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


def test_a_torchvision_weights_name_is_read_from_the_local_cache_only(tmp_path, monkeypatch, weights):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", None)  # nothing downloads
    args = tiny(*RESNET, "model.weights=IMAGENET1K_V1", "treatments=[pretrained]", f"results_dir={tmp_path / 'r'}")
    rc, out, err = run(*args)
    assert rc == 2 and str(hub / "checkpoints" / URL_FILE) in err, err
    assert f"https://download.pytorch.org/models/{URL_FILE}" in err and not (tmp_path / "r").exists()
    rc, out, err = run(*tiny(*RESNET, "model.weights=IMAGENET1K_V9", "treatments=[pretrained]"))
    assert rc == 2 and "IMAGENET1K_V1" in err, err  # the names there are
    rc, out, err = run(*tiny("model=vit_tiny", "model.weights=IMAGENET1K_V1", "treatments=[pretrained]"))
    assert rc == 2 and "vit_tiny" in err and "path" in err, err  # no torchvision weights for it

    (hub / "checkpoints").mkdir(parents=True)
    shutil.copy(weights, hub / "checkpoints" / URL_FILE)
    rc, out, err = run(*args, "dry_run=true")
    assert rc == 0, err
    assert "P2B" in out and "needs model.weights" in out
    cfg = tiny_cfg(*RESNET, "model.weights=IMAGENET1K_V1", "treatments=[pretrained]")
    ctx = SweepContext(cfg, SweepStore(tmp_path / "s"))
    model = build_cell_model(ctx, Cell("pretrained", "B", 1, "random", 0, 0))
    assert torch.equal(model.layers[0][0].weight, torch.load(weights, weights_only=True)["conv1.weight"])


def test_a_tiny_sweep_trains_draws_and_tabulates_pretrained_cells(tmp_path, weights):
    w = tmp_path / "w.pth"
    shutil.copy(weights, w)
    results = tmp_path / "results"
    args = [*RESNET, f"model.weights={w}", f"results_dir={results}"]
    rc, out, err = run(*tiny(*args, "treatments=[pretrained,pretrained_ft]"))
    assert rc == 0, out + err
    root = results / "synthetic-random"
    recs = {r["name"]: r for r in SweepStore(root).records()}
    assert set(recs) == {"baseB", "P2B", "P2B+"} and all(r["status"] == "done" for r in recs.values())
    assert recs["P2B"]["source_sha256"] == file_sha256(w)
    meta = json.loads((root / "sweep.json").read_text())["config"]
    assert meta["model"]["weights"] == str(w) and meta["weights_sha256"] == file_sha256(w)
    cells = pd.read_csv(root / "cells.csv")
    assert sorted(cells.label) == ["PnB", "PnB+", "base"]
    assert "| PnB |" in out and "| PnB+ |" in out  # the console summary: each minus its own base
    eff = analysis.effects(analysis.load(root))
    assert list(eff.label) == ["PnB", "PnB+"] and eff.n.tolist() == [2, 2]
    assert (root / "figures" / "figure2.png").exists()
    fig = analysis.figure2(analysis.load(root))
    top, bottom = fig.axes[:2]
    assert {t.get_text() for t in top.get_legend().get_texts()} >= {"pretrained PnB (1)", "pretrained PnB$^+$ (1)"}
    assert {t.get_text() for t in bottom.get_legend().get_texts()} >= {"pretrained PnB", "pretrained PnB$^+$"}

    # A run without model.weights trains no pretrained cell: the folder keeps its weights file.
    rc, out, err = run(*tiny(*RESNET, f"results_dir={results}", "treatments=[selffer]", "analyze=false"))
    assert rc == 0, out + err
    assert json.loads((root / "sweep.json").read_text())["config"]["weights_sha256"] == file_sha256(w)
    # Another file at the same path is another source: refused.
    torch.save(torchvision_state(seed=3), w)
    rc, out, err = run(*tiny(*args, "treatments=[pretrained]"))
    assert rc == 2 and "weights_sha256" in err, out + err


def test_weights_may_join_a_folder_that_had_none(tmp_path, weights):
    base = [*RESNET, f"results_dir={tmp_path}", "dry_run=true"]
    assert run(*tiny(*base[:-1], "treatments=[selffer]", "analyze=false"))[0] == 0  # trained: the recipe is pinned
    rc, out, err = run(*tiny(*base, f"model.weights={weights}", "treatments=[pretrained]"))
    assert rc == 0, err
    rc, out, err = run(*tiny(*base, "train.epochs=2", "treatments=[selffer]"))
    assert rc == 2 and "train.epochs" in err  # the rest of the recipe is still guarded


def test_the_analysis_compares_them_with_their_own_base_per_replicate(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "r", treatments=FT + ("pretrained", "pretrained_ft")))
    eff = analysis.effects(df)           # 2 split seeds x 2 directions (pooled, footnote 3), n = 1..3
    assert list(eff.label.unique()) == ["BnB", "BnB+", "AnB", "AnB+", "PnB", "PnB+"]
    for label, t in (("PnB", "pretrained"), ("PnB+", "pretrained_ft")):
        e = eff[eff.label == label].set_index("n")
        assert e.replicates.tolist() == [2, 2, 2]
        for n in (1, 2, 3):
            diffs = [accuracy(Cell(t, g, n, "random", s, 0)) - accuracy(Cell("base", g, 0, "random", s, 0))
                     for g in "AB" for s in (0, 1)]
            assert e.mean_pp[n] == pytest.approx(100 * sum(diffs) / 4)
    assert {"PnB", "PnB+"} <= set(analysis.summary(df).index)
    assert "| PnB |" in analysis.console_summary(df)
    top = analysis.figure2(df).axes[0]
    pts = {c.get_gid(): c for c in top.collections}
    for label in ("PnB", "PnB+"):
        xy = pts[label].get_offsets()
        assert len(xy) == 12 and set((xy[:, 0] - analysis.OFFSETS[label]).round(6)) == {1, 2, 3}
        assert pts[label].get_paths()  # drawn
    assert len({analysis.OFFSETS[lab] for lab in analysis.OFFSETS if lab != "base"}) == 6  # all apart

"""Probe cells and CKA in a sweep: planned, run and stored as every cell; what they read (the
source's eval-mode unit-n features), what the analysis makes of them (the comparison with the
transfer drop, the figure, the report) and the CLI."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny, tiny_cfg
from fake_sweep import make_sweep
from test_datasets import write_imagefolder

from transferlab import analysis, sweep
from transferlab import treatments as T
from transferlab.analysis import estimates as E
from transferlab.cells import Cell, plan
from transferlab.config import ConfigError, compose, validate
from transferlab.cka import sweep_cka
from transferlab.estimates import source_network, unit_features
from transferlab.batches import make_batches
from transferlab.runner import SweepContext, load_source
from transferlab.store import SweepStore, file_sha256


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sweep.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def records(root) -> dict:
    return {r["name"]: r for r in SweepStore(root).records()}


# ------------------------------------------------------------------------------ the plan


def test_probe_names_the_probes_of_every_source_the_sweep_has():
    cfg = tiny_cfg("treatments=[probe]", "n=1,2")
    assert [c.name for c in plan(cfg)] == ["baseB", "baseA", "B1B-probe", "A1B-probe", "B2B-probe", "A2B-probe"]
    probe = plan(cfg)[3]
    assert probe.probe and probe.frozen_layers == 1 and probe.base_dependency.name == "baseA"
    assert probe.as_dict()["label"] == "AnB-probe" and not {"AnB-probe", "BnB-probe"} & set(T.FIGURE2)
    # With a pretrained network the group brings its probe too; without one it is left out, not an error.
    assert T.expand(["probe"], pretrained=True) == ["selffer_probe", "transfer_probe", "pretrained_probe"]
    assert T.expand(["transfer", "probe", "transfer"]) == ["transfer", "selffer_probe", "transfer_probe"]


def test_bad_probe_words_and_keys_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"'prob' is not a treatment; allowed: .*transfer_probe.*probe"):
        validate(compose(tiny("treatments=[prob]")))
    with pytest.raises(ConfigError, match="pretrained_probe .*model.weights is not set"):
        validate(compose(tiny("treatments=[pretrained_probe]")))
    with pytest.raises(ConfigError, match=r"probe.holdout=1.5 is not valid; expected a number > 0 and < 1"):
        validate(compose(tiny("probe.holdout=1.5")))
    with pytest.raises(ConfigError, match=r"probe.l2=\[0.1, 0\] is not valid"):
        validate(compose(tiny("probe.l2=[0.1,0]")))
    with pytest.raises(ConfigError, match="probe.max_feature is not a config key.*probe.max_features"):
        validate(compose(tiny("+probe.max_feature=3")))


# ------------------------------------------------------------------------------ probe cells


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A tiny sweep with frozen, fine-tuned and probe cells at n = 1..3."""
    root = tmp_path_factory.mktemp("probed")
    rc, out, err = run(*tiny("treatments=[transfer,transfer_ft,selffer,probe]", "n=1..3", "train.epochs=2",
                             "train.evals_per_epoch=2", f"results_dir={root}"))
    assert rc == 0, err + out
    return root / "synthetic-random", out


def test_probe_cells_are_stored_as_cells_and_read_their_base(probed):
    root, out = probed
    recs = records(root)
    store = SweepStore(root)
    for name in ("B2B-probe", "A2B-probe"):
        r = recs[name]
        src = recs["baseB" if name[0] == "B" else "baseA"]
        assert r["status"] == "done" and r["label"] == name[0] + "nB-probe" and r["frozen_layers"] == 2
        assert r["source_sha256"] == src["model_sha256"]  # the very weights its base wrote
        assert 0 <= r["metrics"]["val_top1"] <= 1 and r["history"] == [] and r["val_images"] == 18
        p = r["probe"]
        assert p["l2"] in [1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5] and len(p["search"]) == 6 and p["unit"] == "conv2"
        assert p["method"] == "ridge" and r["metrics"]["val_loss"] is None and r["metrics"]["val_mse"] > 0
        assert p["features"] == int(np.prod(p["unit_shape"])) and p["holdout_images"] > 0
        assert not store.model_path(r["key"]).exists()  # nothing trained, nothing saved
    assert "a linear probe on task B on unit 2 of baseA" in out
    # The analysis takes them as one evaluation each, best10 included (no selection on validation).
    df = analysis.load(root)
    probes = df[df.probe.astype(bool)]
    assert len(probes) == 6 and probes.evaluations.isna().all()
    assert (probes.best10_top1 == probes.val_top1).all()


def test_a_rerun_skips_finished_probes_and_a_lost_record_gives_the_same_probe(probed, tmp_path):
    root, _ = probed
    recs = records(root)
    store = SweepStore(root)
    key = recs["A3B-probe"]["key"]
    before = json.loads(store.record_path(key).read_text())
    assert before["probe"]["features_shared"]  # the fixture's A1B-probe computed baseA's units 1..3
    store.record_path(key).unlink()
    import transferlab.estimates

    transferlab.estimates._MEMO.clear()  # now A3B-probe computes them itself
    rc, out, err = run(*tiny("treatments=[transfer,transfer_ft,selffer,probe]", "n=1..3", "train.epochs=2",
                             "train.evals_per_epoch=2", f"results_dir={root.parent}", "analyze=false"))
    assert rc == 0, err
    assert "1 trained" in out and "skipped" in out
    after = json.loads(store.record_path(key).read_text())
    assert after["metrics"] == before["metrics"] and after["probe"]["search"] == before["probe"]["search"]
    assert not after["probe"]["features_shared"]


def test_without_memory_to_share_each_probe_computes_its_unit_alone_and_gets_the_same(probed, tmp_path, monkeypatch):
    import shutil

    import transferlab.features
    import transferlab.estimates

    root, _ = probed
    copy = tmp_path / "synthetic-random"
    shutil.copytree(root, copy)
    for d in (copy / "cells").glob("*-probe"):
        shutil.rmtree(d)
    transferlab.estimates._MEMO.clear()
    monkeypatch.setattr(transferlab.features, "_memory_budget", lambda device: 0)
    rc, out, err = run(*tiny("treatments=[transfer,transfer_ft,selffer,probe]", "n=1..3", "train.epochs=2",
                             "train.evals_per_epoch=2", f"results_dir={tmp_path}", "analyze=false"))
    assert rc == 0, err
    assert "6 trained" in out and not transferlab.estimates._MEMO
    shared, alone = records(root), records(copy)
    for name in ("B1B-probe", "A2B-probe", "A3B-probe"):
        assert not alone[name]["probe"]["features_shared"]
        assert alone[name]["metrics"] == shared[name]["metrics"]
        assert alone[name]["probe"]["search"] == shared[name]["probe"]["search"]


def test_the_probe_reads_the_sources_eval_mode_unit_features(probed):
    """What the probe fits is the frozen unit-n output of its base in eval mode (dropout off), pooled."""
    root, _ = probed
    cfg = compose(tiny("treatments=[probe]", f"results_dir={root.parent}"))
    validate(cfg)
    ctx = SweepContext(cfg, SweepStore(root))
    cell = Cell("transfer_probe", "B", 7, "random", 0, 0)  # fc7: after two dropout layers
    net = source_network(ctx, cell, load_source(ctx, cell)[0])
    assert not net.training
    task = ctx.task("B", 0)
    batches = make_batches(task, ctx.dataset.mean, ctx.dataset.std, ctx.device, 8, cfg.data.augment)
    xs, y, shapes = unit_features(net, batches, "val", 7, 4096, 5)  # units 1..7 in one pass
    x = xs[6]
    assert shapes[6] == (cfg.model.fc_units[1],) and torch.equal(y, task.val.y) and len(xs) == 7
    with torch.no_grad():
        want = net.forward_prefix(batches.normalise(task.val.x), 7)
        again = net.forward_prefix(batches.normalise(task.val.x), 7)
    assert torch.equal(want, again)  # eval mode: no dropout draws
    torch.testing.assert_close(x, want, rtol=1e-4, atol=1e-5)  # chunks of 5 images vs one batch
    with torch.no_grad():
        conv2 = net.forward_prefix(batches.normalise(task.val.x), 2)
    assert shapes[1] == tuple(conv2.shape[1:])
    torch.testing.assert_close(xs[1], conv2.flatten(1), rtol=1e-4, atol=1e-5)  # small maps: not pooled


def test_probes_on_a_pretrained_source_an_image_folder_and_torchvision_nets(tmp_path):
    images = write_imagefolder(tmp_path / "images", ["a", "b", "c", "d"], train_per_class=8, val_per_class=4)
    weights = tmp_path / "source.pth"
    torch.save(_resnet_state(), weights)
    rc, out, err = run("data=imagefolder", f"data.root={images}", "model=resnet18_cifar", f"model.weights={weights}",
                       "treatments=[probe]", "n=2,5", "train.epochs=1", "train.batch_size=8", "device=cpu",
                       f"results_dir={tmp_path}", "analyze=false")
    assert rc == 0, err + out
    recs = records(tmp_path / "imagefolder-random")
    assert {"P2B-probe", "P5B-probe", "A5B-probe", "B2B-probe"} <= set(recs)
    p = recs["P5B-probe"]
    assert p["status"] == "done" and p["source_sha256"] == file_sha256(weights)
    assert p["probe"]["unit_shape"] == [128, 10, 10] and p["probe"]["features"] == 128 * 5 * 5  # pooled to 4096
    rc, out, err = run(*tiny("model=vit_tiny", "treatments=[transfer_probe]", "n=2", "data.image_size=16",
                             f"results_dir={tmp_path / 'vit'}", "analyze=false"))
    assert rc == 0, err + out
    vit = records(tmp_path / "vit" / "synthetic-random")["A2B-probe"]
    assert vit["status"] == "done" and len(vit["probe"]["unit_shape"]) == 2  # tokens x width


def _resnet_state() -> dict:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = torchvision.models.resnet18(num_classes=10)
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    return m.state_dict()


# ------------------------------------------------------------------------------ CKA


def test_cka_of_bases_and_fine_tuned_cells_and_its_reuse(probed, monkeypatch):
    root, _ = probed
    cka = pd.read_csv(root / "cka.csv")  # the sweep measured it: it has probe cells
    bases = cka[cka.kind == "bases"]
    assert list(bases.unit) == list(range(1, 8)) and bases.cka.between(-0.1, 1.0001).all()
    assert set(cka[cka.kind == "finetuned"].pair) == {"A1B+ vs baseA", "A2B+ vs baseA", "A3B+ vs baseA"}
    assert (root / "figures" / "estimates.png").exists()
    # Same weights, same kernel, same sample: reused, not recomputed.
    import transferlab.cka as est

    monkeypatch.setattr(est, "cka_by_unit", lambda *a, **k: pytest.fail("recomputed"))
    again = sweep_cka(root, log=lambda m: None)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), cka, check_dtype=False)


def test_units_that_did_not_learn_have_cka_one_with_their_source(tmp_path):
    """transfer_lr_mult=0: a fine-tuned cell's copied units stay as they were, so CKA with its
    source is exactly 1 there; units above n were trained anew and are not."""
    rc, out, err = run(*tiny("treatments=[transfer_ft]", "n=2", "train.transfer_lr_mult=0", "train.epochs=2",
                             f"results_dir={tmp_path}", "analyze=false"))
    assert rc == 0, err
    cka = sweep_cka(tmp_path / "synthetic-random", kernels=("linear", "rbf"), log=lambda m: None)
    ft = cka[cka.kind == "finetuned"].set_index(["unit", "kernel"]).cka
    for kernel in ("linear", "rbf"):
        assert ft[(1, kernel)] == pytest.approx(1.0, abs=1e-9) and ft[(2, kernel)] == pytest.approx(1.0, abs=1e-9)
        assert ft[(6, kernel)] < 0.999


def test_analysis_cli_measures_cka_and_refuses_bad_arguments(probed, tmp_path, capsys):
    root, _ = probed
    assert analysis.main([str(root), "--cka", "--cka-kernels", "linear,rbf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "cka.csv" in out
    assert set(pd.read_csv(root / "cka.csv").kernel) == {"linear", "rbf"}
    report = (tmp_path / "report.md").read_text()
    assert "## Cheap estimates: linear probes and CKA" in report and "Spearman" in report
    assert analysis.main([str(root), "--cka", "--cka-kernels", "cosine"]) == 2
    assert "--cka-kernels='cosine'; allowed: linear, rbf" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the comparison


def _with_probes(root, gap_sign: int = 1, seeds=(0, 1, 2), treatments=("selffer", "transfer")):
    """A fake sweep of 3 replicates whose probes score what their frozen cells score (AnB-probe
    rising with n instead for ``gap_sign`` < 0)."""
    from fake_sweep import write_record

    make_sweep(root, split_seeds=(0,), seeds=seeds, targets=("B",), ns=(1, 2, 3, 4, 5), treatments=treatments,
               num_layers=6)
    for r in SweepStore(root).records():
        if r["treatment"] in ("selffer", "transfer", "pretrained"):
            cell = Cell(r["treatment"] + "_probe", "B", r["n"], "random", 0, r["seed"])
            acc = r["metrics"]["val_top1"]
            if r["treatment"] == "transfer" and gap_sign < 0:  # AnB-probe rising with n: the gap shrinks
                acc = 0.5 + 0.02 * r["n"]
            write_record(root, cell, [acc], num_layers=6)
    return root


def test_rank_correlation_with_the_drop_and_its_interval(tmp_path):
    df = analysis.load(_with_probes(tmp_path / "same"))
    est = E.estimates_frame(df)
    assert set(est.n) == {1, 2, 3, 4, 5} and (est["drop"] > 0).all()
    pred = E.predictions(est).set_index("estimate")
    row = pred.loc["probe gap (BnB-probe - AnB-probe)"]
    assert row.rho == pytest.approx(1.0) and row.replicates == 3 and row.n_values == 5
    assert row.half == pytest.approx(0.0, abs=1e-12)  # the same order in every replicate
    rev = E.predictions(E.estimates_frame(analysis.load(_with_probes(tmp_path / "rev", gap_sign=-1))))
    assert rev.set_index("estimate").loc["probe gap (BnB-probe - AnB-probe)"].rho < 0
    one = E.predictions(E.estimates_frame(analysis.load(_with_probes(tmp_path / "one", seeds=(0,)))))
    assert one.replicates.tolist() == [1, 1] and one.half.isna().all()
    # A pretrained source: PnB-probe against BnB - PnB. fake_sweep: BnB dips at n=2, PnB falls 1 point
    # an n, so BnB - PnB orders n as 2, 1, 3, 4, 5 and PnB-probe (= PnB) as 1..5: rho = 1 - 6*2/120.
    pre = E.predictions(E.estimates_frame(analysis.load(
        _with_probes(tmp_path / "pre", treatments=("selffer", "transfer", "pretrained"))))).set_index("estimate")
    row = pre.loc["PnB-probe accuracy, for BnB - PnB"]
    assert row.rho == pytest.approx(0.9) and row.error_pp == pytest.approx(0.0) and row.replicates == 3


def test_the_figure_and_the_report_section(tmp_path):
    root = _with_probes(tmp_path / "s")
    df = analysis.load(root)
    fig = E.estimates_figure(df)
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"BnB", "AnB", "BnB-probe", "AnB-probe"} <= labels and len(fig.axes) == 1
    analysis.write_figures(root, df=df)
    report = (root / "report.md").read_text()
    assert "How well each estimate predicts the transfer drop" in report
    assert "| probe gap (BnB-probe - AnB-probe) | +1.00 ± 0.00 | 0.0 ± 0.0 | 3 | 5 |" in report
    costs = E.costs(df)
    assert set(costs.what) == {"AnB cells", "BnB cells", "BnB-probe cells", "AnB-probe cells"}


def test_sweep_json_leaves_default_probe_settings_out():
    assert "probe" not in sweep.defining_config(tiny_cfg())
    assert sweep.defining_config(tiny_cfg("probe.holdout=0.3"))["probe"]["holdout"] == 0.3


def test_probes_in_worker_processes_match_in_process(tmp_path):
    """launcher=submitit_local: probes run by the same worker loop in other processes (where no
    features are shared with the other processes' probes) and come out the same."""
    common = tiny("treatments=[probe]", "n=1,2", "analyze=false")
    assert run(*common, f"results_dir={tmp_path / 'one'}")[0] == 0
    rc, out, err = run(*common, f"results_dir={tmp_path / 'two'}", "launcher=submitit_local", "launcher.workers=2",
                       "launcher.poll_s=0.2")
    assert rc == 0, err + out
    one, two = records(tmp_path / "one" / "synthetic-random"), records(tmp_path / "two" / "synthetic-random")
    assert set(one) == set(two) == {"baseA", "baseB", "B1B-probe", "A1B-probe", "B2B-probe", "A2B-probe"}
    for name in ("B1B-probe", "A2B-probe"):
        assert two[name]["launcher"] == "submitit_local" and two[name]["status"] == "done"
        assert two[name]["metrics"] == one[name]["metrics"] and two[name]["probe"]["l2"] == one[name]["probe"]["l2"]

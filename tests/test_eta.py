"""Estimated times (transferlab.eta): per network and for the sweep in a dry run, from finished
records or measured bursts; launcher=slurm's warning when timeout_min is shorter."""
from __future__ import annotations

import json
import re

import pytest

from conftest import tiny, tiny_cfg
from fake_sweep import write_record

from transferlab import eta, executors, sweep
from transferlab.cells import Cell, plan
from transferlab.config import compose, fit_to_data, results_root
from transferlab.executors import slurm
from transferlab.runner import SweepContext
from transferlab.store import SweepStore

# The tiny sweep's tasks: 3 classes, 12 training and 6 validation images a class.
CLASSES, VAL = 3, 18


def context(*overrides: str):
    cfg = tiny_cfg(*overrides)
    ctx = SweepContext(cfg, SweepStore(results_root(cfg)))
    fit_to_data(cfg, ctx.dataset)
    return ctx, plan(cfg)


def finished(root, cell: Cell, wall: float, **extra) -> None:
    """A done record of ``cell`` that took ``wall`` seconds."""
    write_record(root, cell, [0.5], target_classes=CLASSES, val_images=VAL)
    path = SweepStore(root).record_path(cell.key)
    rec = json.loads(path.read_text())
    rec.update({"wall_time": wall, "train_time": wall - 0.25, "setup_time": 0.5, **extra})
    path.write_text(json.dumps(rec))


def test_a_dry_run_prints_every_networks_estimate_and_a_total(tmp_path, capsys):
    # the sizes of a real sweep, which a dry run never generates: 200 training images a class, 30 epochs
    sizes = ("data.train_per_class=200", "train.epochs=30", "train.threads=1")
    code = sweep.main([*tiny("n=1,7", *sizes), "dry_run=true", f"results_dir={tmp_path}", "name=s"])
    assert code == 0
    out = capsys.readouterr().out
    names = [c.name for c in plan(tiny_cfg("n=1,7"))]
    table = out[out.index("estimated time per network:"):]
    took = r"((?:\d+ h )?(?:\d+ min )?[0-9.]+ s)"
    for c in plan(tiny_cfg("n=1,7")):
        line = re.search(rf"^  {re.escape(c.name)} +{re.escape(c.key)} +{took} +\(burst\)$", table, re.M)
        assert line and line.group(1) != "0.00 s", (c.name, table)
    total = re.search(rf"^estimated time: {took} for (\d+) network\(s\) \(\d+ at a time on cpu; measured bursts "
                      r"of (\d+) network shape\(s\) on cpu, [0-9.]+ s; CPU time x[0-9.]+: ", table, re.M)
    assert total, table
    # the whole network (bases, fine-tuned cells), 1 and 7 frozen units: three shapes for 10 networks
    assert (int(total.group(2)), int(total.group(3))) == (len(names), 3)
    assert "An estimate" in table
    assert not (tmp_path / "s" / "sweep.json").exists()  # still a dry run: nothing pinned


def test_estimates_from_finished_records_are_the_records_times(tmp_path):
    ctx, cells = context("n=1", f"results_dir={tmp_path}", "name=s", "launcher.workers=1")
    by = {c.name: c for c in cells}
    root = ctx.store.root
    finished(root, by["baseB"], 12.5)
    finished(root, by["B1B"], 3.25)
    finished(root, by["B1B+"], 14.5)
    est = eta.estimate(ctx, cells)
    got = {n.cell.name: (n.seconds, n.basis, n.done) for n in est.networks}
    assert got == {"baseB": (12.5, "records", True), "B1B": (3.25, "records", True), "B1B+": (14.5, "records", True),
                   # the same work: a base and a fine-tuned cell train the whole network (the median of
                   # theirs); A1B the layers above 1 frozen unit, as B1B did
                   "baseA": (13.5, "records", False), "A1B": (3.25, "records", False),
                   "A1B+": (13.5, "records", False)}
    assert est.bursts == 0 and est.records == 3
    assert est.seconds == pytest.approx(13.5 + 3.25 + 13.5)  # one at a time, the done ones left out
    assert "for 3 network(s), 3 already done" in est.total_line()
    assert "from 3 finished record(s)" in est.total_line()
    # two at a time: A1B and A1B+ wait for baseA, then train side by side
    ctx2, _ = context("n=1", f"results_dir={tmp_path}", "name=s", "launcher.workers=2")
    assert eta.estimate(ctx2, cells).seconds == pytest.approx(13.5 + 13.5)


def test_a_record_of_other_epochs_is_scaled_and_a_resumed_one_counts_its_attempts(tmp_path):
    ctx, cells = context("n=1", f"results_dir={tmp_path}", "name=s", "train.epochs=2")
    by = {c.name: c for c in cells}
    # 4 epochs in 10.25 s, 0.5 of them setup: 2 epochs take 0.5 + 9.75 / 2, plus the 0.25 s around training
    finished(ctx.store.root, by["baseB"], 10.5, config={"train": {"epochs": 4}})
    assert eta.record_seconds(ctx.store.read_record(by["baseB"].key), 2) == pytest.approx(10.5 - 9.75 / 2)
    # a resumed record's wall time is its last attempt only; its train_time spans them all
    finished(ctx.store.root, by["B1B"], 2.0, resumed_from_epoch=1, train_time=7.0)
    assert eta.record_seconds(ctx.store.read_record(by["B1B"].key), 2) == 7.0
    seconds = {n.cell.name: n.seconds for n in eta.estimate(ctx, cells).networks}
    assert seconds["baseA"] == pytest.approx(10.5 - 9.75 / 2) and seconds["A1B"] == 7.0


def test_a_burst_is_positive_and_a_cached_frozen_cell_costs_less_than_a_base(tmp_path):
    # The dry run's sizes, not the images: 200 training images a class are never generated.
    sizes = ("data.train_per_class=200", "data.val_per_class=60", "train.batch_size=32", "train.epochs=30",
             "train.threads=1")
    ctx, cells = context("n=7", "treatments=[transfer]", *sizes, f"results_dir={tmp_path}")
    est = eta.estimate(ctx, cells)
    s = {n.cell.name: n.seconds for n in est.networks}
    assert set(s) == {"baseB", "baseA", "A7B"} and all(n.basis == "burst" for n in est.networks)
    assert all(v > 0 for v in s.values())
    assert s["baseA"] == s["baseB"] and s["A7B"] < s["baseA"] / 2, s
    assert est.bursts == 2 and est.took < 20
    w = eta.work_of(ctx, next(c for c in cells if c.name == "A7B"), {})
    assert (w.frozen, w.task) == (7, eta.TaskSize(3, 600, 180))
    cached = eta.burst(ctx.cfg, ctx.device, w, cache=True)
    assert cached.start == 5  # the cache ends before fc6's dropout
    # with random flips the cache does not apply: every step runs the 7 frozen units again
    flip, _ = context("n=7", "treatments=[transfer]", *sizes, "data.augment.flip=true", f"results_dir={tmp_path}")
    assert not eta.cache_applies(flip.cfg, w.task) and eta.cache_applies(ctx.cfg, w.task)
    uncached = eta.burst(flip.cfg, flip.device, w, cache=False)
    assert uncached.start == 0 and uncached.prefix_image == 0
    assert eta.burst_seconds(flip.cfg, w, uncached) > eta.burst_seconds(ctx.cfg, w, cached)


def test_task_sizes_come_from_the_config_without_reading_an_image(tmp_path):
    ctx, _ = context(f"results_dir={tmp_path}")
    assert eta.task_size(ctx, "B", 0) == eta.TaskSize(CLASSES, 36, VAL)
    assert ctx.dataset._images is None
    cfg = compose(["data=cifar100", "data.root=/nowhere", "model=caffenet_cifar", "split=dissimilar"])
    cifar = SweepContext(cfg, SweepStore(tmp_path))
    a, b = eta.task_size(cifar, "A", 0), eta.task_size(cifar, "B", 0)  # 30 man-made classes, 70 natural
    assert (a, b) == (eta.TaskSize(30, 15000, 3000), eta.TaskSize(70, 35000, 7000))


def test_layout_runs_bases_first_and_workers_side_by_side():
    cfg = tiny_cfg("n=1", "treatments=[transfer]")
    cells = plan(cfg)  # baseB, baseA, A1B (needs baseA)
    seconds = {c.key: {"baseB": 10.0, "baseA": 4.0, "A1B": 3.0}[c.name] for c in cells}
    assert eta.layout(cells, seconds, 1) == 17.0
    assert eta.layout(cells, seconds, 2) == 10.0  # A1B starts when baseA ends, beside baseB
    assert eta.layout(cells, seconds, 3) == 10.0


def slurm_estimate(seconds: float, basis: str = "burst") -> eta.SweepEstimate:
    cell = Cell("base", "B", 0, "random", 0, 0)
    return eta.SweepEstimate([eta.Network(cell, seconds, basis, records=3 if basis == "records" else 0)],
                             seconds, 64, "cpu", "slurm", bursts=1)


def test_the_timeout_warning_names_the_network_the_estimate_and_what_happens():
    lc = tiny_cfg("launcher=slurm", "launcher.timeout_min=1").launcher
    text = eta.timeout_warning(slurm_estimate(150.0), lc)
    assert text.startswith("launcher.timeout_min=1 is shorter than the estimate of 1 network(s): the longest, "
                           "baseB (random0_s0_baseB), 2 min 30 s (from a burst measured on this machine's cpu, "
                           "which may not represent the compute nodes"), text
    assert "requeued and resumes from its last epoch's checkpoint, up to launcher.max_num_timeout=20" in text
    assert "launcher.timeout_min=10 would let each finish in one go" in text  # 1.5 x 150 s + 120 s, in tens
    assert "from 3 finished record(s)" in eta.timeout_warning(slurm_estimate(150.0, "records"), lc)
    short = tiny_cfg("launcher=slurm", "launcher.timeout_min=1", "launcher.max_num_timeout=0").launcher
    assert "so it would end unfinished" in eta.timeout_warning(slurm_estimate(150.0), short)
    assert eta.timeout_warning(slurm_estimate(150.0), tiny_cfg("launcher=slurm").launcher) is None  # 240 min
    assert eta.timeout_warning(slurm_estimate(59.0), lc) is None


class FakeJob:
    def __init__(self, job_id: str):
        self.job_id = job_id


class FakeExecutor:
    submitted: list = []

    def map_array(self, fn, args):
        FakeExecutor.submitted.append(args)
        return [FakeJob(f"{4242 + len(FakeExecutor.submitted)}_{i}") for i in range(len(args))]


@pytest.fixture
def submit(tmp_path, monkeypatch):
    """overrides -> what SlurmArrays.submit logs, without a cluster (sbatch replaced)."""
    monkeypatch.setattr(slurm, "slurm_executor", lambda *a, **k: FakeExecutor())

    def run(*overrides: str):
        FakeExecutor.submitted = []
        ctx, cells = context("n=1", "launcher=slurm", f"results_dir={tmp_path}", *overrides)
        history = [{"run_id": "r", "job_ids": [], "keys": {}}]
        slurm.SlurmArrays(ctx.cfg.launcher).submit(ctx, cells, "r", tmp_path / "slurm", history)
        assert len(FakeExecutor.submitted) == 2  # both arrays submitted, warning or not
        return history
    return run


def test_submission_warns_when_a_network_outlasts_timeout_min(submit, monkeypatch, capsys):
    # warn_timeout looks estimate up in its own module, eta.sweep_time
    monkeypatch.setattr(eta.sweep_time, "estimate", lambda ctx, cells, todo=None: slurm_estimate(150.0))
    submit("launcher.timeout_min=1")
    err = capsys.readouterr().err
    assert "warning: launcher.timeout_min=1 is shorter than the estimate" in err and "2 min 30 s" in err, err
    submit("launcher.timeout_min=240")
    assert "timeout_min" not in capsys.readouterr().err


def test_a_failed_estimate_never_stops_a_submission(submit, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("no burst today")
    monkeypatch.setattr(eta.sweep_time, "estimate", broken)
    history = submit("launcher.timeout_min=1")
    assert len(history[-1]["job_ids"]) == 2
    assert "timeout_min" not in capsys.readouterr().err


def test_a_slurm_dry_run_warns_from_finished_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executors.shutil, "which", lambda name: f"/usr/bin/{name}")  # as on a login node
    args = [*tiny("n=1"), "launcher=slurm", "dry_run=true", f"results_dir={tmp_path}", "name=s"]
    finished(tmp_path / "s", Cell("base", "B", 0, "random", 0, 0), 150.0)
    assert sweep.main([*args, "launcher.timeout_min=1"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^  baseA +random0_s0_baseA +2 min 30 s +\(1 record\(s\)\)$", out, re.M), out
    # no GPU here to measure the GPU tasks' cells on: they have no estimate, and the line says why
    assert re.search(r"^  A1B +random0_s0_A1B +- +\(no estimate\)$", out, re.M), out
    assert "without an estimate (the tasks ask for GPUs and this machine has none" in out
    assert "warning: launcher.timeout_min=1 is shorter than the estimate of 3 network(s): the longest, baseA" in err
    assert sweep.main([*args, "launcher.timeout_min=60"]) == 0
    assert "timeout_min" not in capsys.readouterr().err

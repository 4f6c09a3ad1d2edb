"""Tracking: TensorBoard event files per network as it trains and a summary at the end
(logger=tensorboard), and history.csv for every sweep."""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny, tiny_cfg

from transferlab import analysis, runner, sweep, tracking
from transferlab.cells import Cell
from transferlab.config import ConfigError
from transferlab.store import SweepStore
from transferlab.train import Interrupted

pytest.importorskip("tensorboard")  # the test extra installs it
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

ONE = ("n=1", "train.threads=1", "analyze=false")
TAGS = {"train_loss": "train/loss", "train_top1": "train/top1", "val_top1": "val/top1", "val_top5": "val/top5",
        "val_loss": "val/loss", "lr": "lr"}


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*/record.json"))]


def raw_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar point in every event file of a run, in file order: (step, value) per tag,
    duplicates kept (EventAccumulator would purge out-of-order steps and hide them)."""
    out = defaultdict(list)
    for path in sorted(p for p in folder.iterdir() if "tfevents" in p.name):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out[v.tag].append((event.step, v.simple_value))
                elif v.metadata.plugin_data.plugin_name == "scalars":
                    out[v.tag].append((event.step, float(np.asarray(v.tensor.float_val or v.tensor.double_val)[0])))
    return dict(out)


def expected_scalars(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """A history's points as TensorBoard stores them (float32), one per evaluation."""
    return {tag: [(h["step"], float(np.float32(h[key]))) for h in history]
            for key, tag in TAGS.items() if history[0].get(key) is not None}


def open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    links = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()] if fds.is_dir() else []
    return [p for p in links if p.startswith(str(folder))]


def test_tensorboard_runs_match_the_records_and_the_summary_is_written(tmp_path):
    # 6 classes a task (val/top5 is logged), 2 evaluations an epoch, 2 epochs; probes train nothing.
    rc = sweep.main(tiny(*ONE, "logger=tensorboard", "treatments=[selffer,transfer,probe]",
                         "data.classes_per_superclass=6", "train.epochs=2", "train.evals_per_epoch=2",
                         f"results_dir={tmp_path}"))
    assert rc == 0
    root = tmp_path / "synthetic-random"
    tb = root / "tensorboard"
    recs = records(root)
    trained = [r for r in recs if not r["probe"]]
    assert len(trained) == 4 and len(recs) == 6 and all(r["status"] == "done" for r in recs)
    assert sorted(p.name for p in tb.iterdir()) == sorted([r["key"] for r in trained] + ["summary"])
    for r in trained:
        want = expected_scalars(r["history"])
        assert set(want) == set(TAGS.values()) and len(want["val/top1"]) == 4   # 2 epochs x 2 evaluations
        assert raw_scalars(tb / r["key"]) == want, r["key"]
        ea = EventAccumulator(str(tb / r["key"]))
        ea.Reload()
        assert set(ea.Tags()["scalars"]) == set(want)
        for tag, points in want.items():
            assert [(e.step, e.value) for e in ea.Scalars(tag)] == points, (r["key"], tag)

    # The summary: mean top-1 of each label against n, and the console summary as text.
    by = defaultdict(list)
    for r in recs:
        by[(r["label"], r["n"])].append(r["metrics"]["val_top1"])
    ea = EventAccumulator(str(tb / "summary"))
    ea.Reload()
    got = {(tag.removeprefix("top1/"), e.step): e.value for tag in ea.Tags()["scalars"] for e in ea.Scalars(tag)}
    assert got == {k: float(np.float32(np.mean(v))) for k, v in by.items()}
    assert {label for label, _ in got} == {"base", "BnB", "AnB", "BnB-probe", "AnB-probe"}
    text = ea.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    lines = text.splitlines()
    assert all(line.startswith("    ") for line in lines) and "AnB" in text  # preformatted in markdown
    assert "\n".join(line[4:] for line in lines) == analysis.console_summary(analysis.load(root))

    # Every writer closed, every event file renamed in whole.
    assert open_files_under(tb) == []
    assert not [p for p in (root / tracking.TMP).rglob("*") if p.is_file()]


def test_a_resumed_network_writes_no_step_twice(tmp_path):
    cfg = tiny_cfg(*ONE, "logger=tensorboard", "train.epochs=3", "train.evals_per_epoch=2",
                   f"results_dir={tmp_path}")
    store = SweepStore(tmp_path / "s")
    ctx = runner.SweepContext(cfg, store)
    cell = Cell("base", "B", 0, "random", 0, 0)
    run = store.root / "tensorboard" / cell.key
    # Interrupted in epoch 2: epoch 1's checkpoint and events are there.
    with pytest.raises(Interrupted):
        runner.run_cell(ctx, cell, log=lambda m: None, should_stop=store.checkpoint_path(cell.key).exists)
    from transferlab.store import load_state

    first = load_state(store.checkpoint_path(cell.key))["history"]
    assert raw_scalars(run) == expected_scalars(first) and len(first) == 2
    record = runner.run_cell(ctx, cell, log=lambda m: None)
    assert record["status"] == "done" and record["resumed_from_epoch"] == 1 and len(record["history"]) == 6
    assert record["history"][:2] == first
    assert raw_scalars(run) == expected_scalars(record["history"])  # each step once, in order
    assert open_files_under(run) == []


def test_a_network_killed_after_its_last_checkpoint_gets_its_whole_run_on_the_rerun(tmp_path, monkeypatch):
    """Killed after the last epoch's checkpoint, before the record (and here with its events lost
    too): the rerun trains no epoch, yet writes the run from the checkpoint's history."""
    cfg = tiny_cfg(*ONE, "logger=tensorboard", "train.evals_per_epoch=2", f"results_dir={tmp_path}")
    store = SweepStore(tmp_path / "s")
    ctx = runner.SweepContext(cfg, store)
    cell = Cell("base", "B", 0, "random", 0, 0)
    run = store.root / "tensorboard" / cell.key

    class Killed(BaseException):
        pass

    def killed(path, obj):
        raise Killed(path)

    with monkeypatch.context() as m:
        m.setattr(runner, "atomic_write_json", killed)
        with pytest.raises(Killed):
            runner.run_cell(ctx, cell, log=lambda m: None)
    assert store.checkpoint_path(cell.key).exists() and raw_scalars(run)
    shutil.rmtree(run)
    record = runner.run_cell(ctx, cell, log=lambda m: None)
    assert record["resumed_from_epoch"] == 1 and len(record["history"]) == 2
    assert raw_scalars(run) == expected_scalars(record["history"])


def test_history_csv_has_every_evaluation_and_logger_none_writes_no_events(tmp_path):
    rc = sweep.main(tiny(*ONE, "treatments=[transfer]", "train.epochs=2", "train.evals_per_epoch=2",
                         f"results_dir={tmp_path}"))
    assert rc == 0
    root = tmp_path / "synthetic-random"
    assert not (root / "tensorboard").exists() and not (root / tracking.TMP).exists()

    def check(hist: pd.DataFrame) -> None:
        recs = records(root)
        assert len(recs) == 3 and len(hist) == sum(len(r["history"]) for r in recs) == 12
        for r in recs:
            rows = hist[hist.key == r["key"]]
            assert set(rows[["name", "treatment", "split_seed", "seed", "n"]].itertuples(index=False)) == \
                {(r["name"], r["treatment"], r["split_seed"], r["seed"], r["n"])}
            for col in ("epoch", "step", "train_loss", "train_top1", "val_top1", "val_loss", "lr", "time"):
                assert rows[col].tolist() == pytest.approx([h[col] for h in r["history"]], rel=1e-12), col
            assert rows.val_top5.isna().all()  # 3 classes a task: no top-5

    check(pd.read_csv(root / "history.csv"))
    # An old sweep folder without one gets it from the analysis.
    (root / "history.csv").unlink()
    assert analysis.main([str(root)]) == 0
    check(pd.read_csv(root / "history.csv"))


def test_logger_tensorboard_without_the_package_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # an import of it now raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    tracking.check(tiny_cfg("logger=none"))                   # nothing needed without it
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package: "
                                          r"pip install 'transferlab\[tensorboard\]'"):
        tracking.check(tiny_cfg("logger=tensorboard"))
    assert sweep.main(tiny(*ONE, "logger=tensorboard", f"results_dir={tmp_path / 'r'}")) == 2
    out = capsys.readouterr()
    assert "logger=tensorboard needs the tensorboard package" in out.err + out.out
    assert not (tmp_path / "r").exists()

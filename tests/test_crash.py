"""Crash safety: a sweep killed mid-cell resumes from the per-epoch checkpoint and ends with
exactly the results of a run that was never interrupted; concurrent workers train every
network once; corrupted files are recomputed; a diverging cell fails alone."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny, without_timing

from transferlab import runner, sweep
from transferlab.cells import Cell
from transferlab.config import compose
from transferlab.models import build_model
from transferlab.runner import SweepContext
from transferlab.store import SweepStore, load_state
from transferlab.train import make_batches, train

# 3 networks (baseA, baseB, A1B) on 6 classes; epochs are ~0.1 s, so a cell of 20 epochs
# leaves a wide window to kill it between its first checkpoint and its end.
TINY = tiny("n=1", "treatments=[transfer]", "data.train_per_class=64", "data.val_per_class=8",
            "train.batch_size=16", "analyze=false")


def sweep_cmd(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "transferlab.sweep", *TINY, f"results_dir={results}", *extra]


def cells_dir(results: Path) -> Path:
    return results / "synthetic-random" / "cells"


def assert_same_results(ref: Path, other: Path) -> None:
    """Every network: same metrics and history, bit-identical weights."""
    keys = sorted(p.name for p in ref.glob("*"))
    assert keys and keys == sorted(p.name for p in other.glob("*"))
    for key in keys:
        a, b = (json.loads((d / key / "record.json").read_text()) for d in (ref, other))
        assert a["status"] == b["status"] == "done", key
        assert without_timing(a["metrics"]) == without_timing(b["metrics"]), key
        assert without_timing(a["history"]) == without_timing(b["history"]), key
        wa, wb = load_state(ref / key / "model.pt"), load_state(other / key / "model.pt")
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{key}: {name} differs"


def test_resumed_training_ends_exactly_as_an_uninterrupted_run(tmp_path):
    """train(): stop after epoch 1, save the state through torch.save / weights_only load, resume
    in a fresh model: the weights equal those of 3 epochs straight (dropout and shuffling too)."""
    cfg = compose(TINY + ["train.epochs=3", "data.train_per_class=16"])
    ctx = SweepContext(cfg, SweepStore(tmp_path))
    task = ctx.task("B", 0)

    def fresh():
        return build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(1))

    def batches():
        return make_batches(task, ctx.dataset.mean, ctx.dataset.std, torch.device("cpu"), 16)

    straight = fresh()
    ref = train(straight, batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None)

    saved = []

    class Stop(Exception):
        pass

    def save_then_stop(state):
        torch.save(state, tmp_path / "ckpt.pt")
        saved.append(state["epoch"])
        raise Stop

    with pytest.raises(Stop):
        train(fresh(), batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None,
              on_epoch_end=save_then_stop)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = fresh()
    torch.manual_seed(1234)  # the resumed run must not depend on the global RNG it finds
    out = train(resumed, batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None, state=state)
    assert saved == [1] and [h["epoch"] for h in out["history"] if h["epoch"] == int(h["epoch"])] == [1, 2, 3]
    assert without_timing(out["history"]) == without_timing(ref["history"])  # every evaluation, too
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_sigkill_mid_cell_then_rerun_gives_identical_results(tmp_path):
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    epochs = "train.epochs=20"
    done = subprocess.run(sweep_cmd(ref, epochs), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    # Kill the sweep with SIGKILL as soon as the cell A1B has written its first checkpoint.
    victim = cells_dir(crashed) / "random0_s0_A1B"
    proc = subprocess.Popen(sweep_cmd(crashed, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (victim / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before A1B's first checkpoint"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (victim / "record.json").exists(), "killed too late: A1B had finished"
    epoch_killed = load_state(victim / "checkpoint.pt")["epoch"]
    assert 1 <= epoch_killed < 20
    # A1B needs only baseA: baseB may still have been training beside it when the kill came.
    finished = len(list(cells_dir(crashed).glob("*/record.json")))
    assert finished in (1, 2)

    again = subprocess.run(sweep_cmd(crashed, epochs), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming from the checkpoint of epoch {epoch_killed}" in again.stdout
    assert f"{3 - finished} trained, {finished} skipped" in again.stdout
    assert_same_results(cells_dir(ref), cells_dir(crashed))
    rec = SweepStore(cells_dir(crashed).parent).read_record("random0_s0_A1B")
    assert (rec["attempt"], rec["restarts"], rec["resumed_from_epoch"]) == (2, 1, epoch_killed)
    assert not (victim / "checkpoint.pt").exists()  # removed once the record is written
    assert not list(victim.glob(".*.tmp"))


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_says_how_far_it_got_exits_130_and_the_rerun_resumes(tmp_path, workers):
    """SIGINT (Ctrl-C) mid-cell: no traceback, 'interrupted: k of N networks finished; run the
    same command to resume', exit status 130; the rerun resumes and ends as an uninterrupted run."""
    ref, stopped = tmp_path / "ref", tmp_path / "stopped"
    args = ("train.epochs=20", f"launcher.workers={workers}")
    done = subprocess.run(sweep_cmd(ref, *args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    victim = cells_dir(stopped) / "random0_s0_A1B"
    # A terminal's Ctrl-C: SIGINT at its default, even where pytest itself runs with it ignored (a
    # background job of a non-interactive shell inherits SIG_IGN, and so would the sweep).
    proc = subprocess.Popen(sweep_cmd(stopped, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (victim / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before A1B's first checkpoint"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    finished = len(list(cells_dir(stopped).glob("*/record.json")))
    assert f"interrupted: {finished} of 3 networks finished; run the same command to resume" in err
    assert not (victim / "record.json").exists()
    again = subprocess.run(sweep_cmd(stopped, *args), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from the checkpoint of epoch" in again.stdout
    assert_same_results(cells_dir(ref), cells_dir(stopped))

def test_two_sweeps_started_at_once_train_every_network_once(tmp_path):
    cmd = sweep_cmd(tmp_path, "n=1,2", "treatments=[selffer,transfer]", "train.epochs=2")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    networks = 2 + 4  # baseA, baseB; B1B, A1B, B2B, A2B
    trained = sum(out.count(": training on task") for out in outs)
    assert trained == networks, outs
    store = SweepStore(cells_dir(tmp_path).parent)
    recs = store.records()
    assert len(recs) == networks and all(r["status"] == "done" and r["attempt"] == 1 for r in recs)


def test_corrupted_record_checkpoint_and_model_are_recomputed(tmp_path, capsys):
    args = TINY + ["train.epochs=2", "data.train_per_class=16", f"results_dir={tmp_path}"]
    assert sweep.main(args) == 0
    cells = cells_dir(tmp_path)
    ref = tmp_path / "ref"
    ref.mkdir()
    for d in cells.iterdir():  # the reference: records and weights as first written
        (ref / d.name).mkdir()
        for f in ("record.json", "model.pt"):
            (ref / d.name / f).write_bytes((d / f).read_bytes())

    rec = cells / "random0_s0_baseB" / "record.json"
    rec.write_bytes(rec.read_bytes()[:100])                      # a truncated record
    model = cells / "random0_s0_baseA" / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF                                 # a flipped byte in a base's weights
    model.write_bytes(bytes(data))
    (cells / "random0_s0_A1B" / "record.json").unlink()         # a cell killed ...
    (cells / "random0_s0_A1B" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")  # ... mid-write
    capsys.readouterr()

    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    for what in ("random0_s0_baseB/record.json", "random0_s0_baseA/model.pt", "random0_s0_A1B/checkpoint.pt"):
        assert f"{what} is corrupted" in out, out
    assert "3 trained" in out
    assert_same_results(ref, cells)


def test_a_diverging_cell_fails_alone_and_is_retried_next_run(tmp_path, monkeypatch, capsys):
    """baseA's loss becomes NaN: baseA and A1B (which needs it) fail with their reasons, baseB and
    B1B finish, the exit status is 1; the next run retries the failed ones."""
    args = TINY + ["treatments=[selffer,transfer]", "train.epochs=2", "data.train_per_class=16",
                   f"results_dir={tmp_path}"]
    real_train = runner.train
    diverging = runner._seed_for(Cell("base", "A", 0, "random", 0, 0), "train")

    def train_with_a_huge_lr(model, batches, cfg, **kw):
        if kw["seed"] == diverging:
            cfg = cfg.copy()
            cfg.lr = 1e12
        return real_train(model, batches, cfg, **kw)

    monkeypatch.setattr(runner, "train", train_with_a_huge_lr)
    assert sweep.main(args) == 1
    out = capsys.readouterr().out
    store = SweepStore(cells_dir(tmp_path).parent)
    status = {r["name"]: r["status"] for r in store.records()}
    assert status == {"baseA": "failed", "A1B": "failed", "baseB": "done", "B1B": "done"}
    assert store.read_record("random0_s0_baseA")["error"].startswith("TrainingDiverged: loss became")
    assert store.read_record("random0_s0_A1B")["error"].startswith("its base baseA failed: TrainingDiverged")
    assert "2 trained, 0 skipped, 2 failed" in out and "failed: random0_s0_baseA: TrainingDiverged" in out

    monkeypatch.setattr(runner, "train", real_train)
    assert sweep.main(args) == 0
    assert "2 trained, 2 skipped, 0 failed" in capsys.readouterr().out
    assert store.read_record("random0_s0_baseA")["attempt"] == 2

"""Crash safety: a sweep killed mid-cell resumes from the per-epoch checkpoint and ends with
exactly the results of a run that was never interrupted; concurrent workers train every
network once; corrupted files are recomputed; a diverging cell fails alone."""
from __future__ import annotations

import json
import signal
import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny, without_timing

from transferlab import runner, sweep
from transferlab.cells import Cell, plan
from transferlab.config import compose
from transferlab.executors import InProcess, StillRunning, local
from transferlab.models import build_model
from transferlab.runner import SweepContext
from transferlab.store import SweepStore, load_state
from transferlab.train import Interrupted, make_batches, train

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


def interrupt(results: Path, args, victims: list[str]) -> tuple[subprocess.Popen, str, str]:
    """Start the sweep, send it SIGINT (a terminal's Ctrl-C) as soon as one of ``victims`` has
    written a checkpoint in this run, and let it end: (process, stdout, stderr)."""
    ckpts = [cells_dir(results) / f"random0_s0_{v}" / "checkpoint.pt" for v in victims]

    def stamps():
        return [c.stat().st_mtime_ns if c.exists() else None for c in ckpts]

    before = stamps()
    # SIGINT at its default, even where pytest itself runs with it ignored (a background job of
    # a non-interactive shell inherits SIG_IGN, and so would the sweep).
    proc = subprocess.Popen(sweep_cmd(results, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not any(now is not None and now != then for now, then in zip(stamps(), before)):
        assert proc.poll() is None and time.time() < deadline, f"the sweep ended before a checkpoint of {victims}"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc, out, err


@pytest.mark.parametrize(("workers", "victims", "rounds"), [(1, ["A1B"], 1), (2, ["baseA", "baseB"], 3)])
def test_ctrl_c_says_how_far_it_got_exits_130_and_the_rerun_resumes(tmp_path, workers, victims, rounds):
    """SIGINT (Ctrl-C) mid-cell: no traceback, 'interrupted: k of N networks finished; run the
    same command to resume', exit status 130; the rerun resumes and ends as an uninterrupted run.

    With 2 workers the signal comes while the two bases train side by side in their threads, in
    ``rounds`` runs (each resuming the one before): the sweep must wait for every thread to stop.
    Returning while one is inside a torch op aborted the process at the interpreter's shutdown
    ("terminate called without an active exception", SIGABRT), in about 1 run in 3 here."""
    ref, stopped = tmp_path / "ref", tmp_path / "stopped"
    args = ("train.epochs=20", f"launcher.workers={workers}")
    done = subprocess.run(sweep_cmd(ref, *args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for r in range(rounds):
        proc, out, err = interrupt(stopped, args, victims)
        assert "terminate called" not in err, f"round {r + 1}: {err}"
        assert proc.returncode == 130, f"round {r + 1}: {out}{err}"
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        finished = len(list(cells_dir(stopped).glob("*/record.json")))
        assert f"interrupted: {finished} of 3 networks finished; run the same command to resume" in err
        assert not any((cells_dir(stopped) / f"random0_s0_{v}" / "record.json").exists() for v in victims), \
            "interrupted too late"
        assert r == 0 or "resuming from the checkpoint of epoch" in out
    again = subprocess.run(sweep_cmd(stopped, *args), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from the checkpoint of epoch" in again.stdout
    assert_same_results(cells_dir(ref), cells_dir(stopped))


class SlowToStop:
    """In place of run_cells in launcher=local's worker threads: a worker whose network trains
    until it is told to stop, then takes ``slow_s`` to reach the end of its step in the thread
    named ``slow`` (0.05 s in the others) and raises train.Interrupted, as train() does."""

    def __init__(self, workers: int, slow: str, slow_s: float):
        self.workers, self.slow, self.slow_s = workers, slow, slow_s
        self.started, self.ended, self.all_started, self._lock = [], [], threading.Event(), threading.Lock()

    def __call__(self, ctx, cells, run_id, say=print, should_stop=None, parallel=1, once=None):
        name = threading.current_thread().name
        with self._lock:
            self.started.append(name)
            if len(self.started) == self.workers:
                self.all_started.set()
        give_up = time.monotonic() + 60
        while not should_stop() and time.monotonic() < give_up:
            time.sleep(0.005)
        time.sleep(self.slow_s if name == self.slow else 0.05)
        self.ended.append(name)
        raise Interrupted("stopped")

    def wait_until_ended(self) -> None:
        deadline = time.monotonic() + 60
        while len(self.ended) < self.workers and time.monotonic() < deadline:
            time.sleep(0.01)


@contextlib.contextmanager
def terminal_sigint():
    """SIGINT as in a terminal's foreground process (pytest may run with it ignored), restored after."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def ctrl_c_when(ready: threading.Event, times: int = 1, after_s: float = 0.3) -> threading.Thread:
    """Ctrl-C ``times`` times (0.05 s apart) in the main thread, ``after_s`` after ``ready``:
    by then it waits for the worker threads."""
    def press():
        if ready.wait(60):
            time.sleep(after_s)
            for _ in range(times):
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                time.sleep(0.05)

    t = threading.Thread(target=press, daemon=True)
    t.start()
    return t


def worker_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("transferlab-worker")]


@pytest.mark.parametrize("slow", ["transferlab-worker-0", "transferlab-worker-1"])
def test_ctrl_c_waits_for_every_worker_thread_to_stop(tmp_path, monkeypatch, capsys, slow):
    """Whichever network is slowest to stop, the sweep ends only after every worker thread has:
    a thread left in a torch op aborts the process at the interpreter's shutdown. (A
    KeyboardInterrupt inside Thread.join marked the joined thread as ended, CPython gh-90882.)"""
    fake = SlowToStop(2, slow, slow_s=1.0)
    monkeypatch.setattr(local, "run_cells", fake)
    ctrl_c_when(fake.all_started)
    with terminal_sigint():
        rc = sweep.main(TINY + ["train.epochs=2", "launcher.workers=2", f"results_dir={tmp_path}"])
    ended_then, running_then = list(fake.ended), worker_threads()
    fake.wait_until_ended()
    assert rc == 130
    assert sorted(ended_then) == ["transferlab-worker-0", "transferlab-worker-1"], "returned before they stopped"
    assert running_then == []
    err = capsys.readouterr().err
    assert "interrupted: 0 of 3 networks finished; run the same command to resume" in err
    assert "Ctrl-C again to quit at once" in err


def test_a_second_ctrl_c_or_a_network_that_does_not_stop_leaves_at_once(tmp_path, monkeypatch, capsys):
    """Ctrl-C twice: StillRunning (the sweep then ends with os._exit(130)) without waiting for the
    networks; so too once they have not stopped within STOP_WAIT_S of the first."""
    cfg = compose(TINY + ["train.epochs=2", "launcher.workers=2", f"results_dir={tmp_path}"])
    ctx = SweepContext(cfg, SweepStore(tmp_path / "s"))
    for presses, wait_s, why in [(2, 60.0, ""), (1, 0.3, "still busy")]:
        fake = SlowToStop(2, "transferlab-worker-0", slow_s=2.0)
        monkeypatch.setattr(local, "run_cells", fake)
        monkeypatch.setattr(local, "STOP_WAIT_S", wait_s)
        ctrl_c_when(fake.all_started, times=presses)
        t0 = time.monotonic()
        with terminal_sigint(), pytest.raises(StillRunning):
            InProcess().run(ctx, plan(cfg), "run-1")
        assert time.monotonic() - t0 < 1.5, "waited for the slow network"
        assert "transferlab-worker-0" not in fake.ended
        assert why in capsys.readouterr().err
        fake.wait_until_ended()


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
    out, err = capsys.readouterr()
    for what in ("random0_s0_baseB/record.json", "random0_s0_baseA/model.pt", "random0_s0_A1B/checkpoint.pt"):
        assert f"{what} is corrupted" in err, err  # warnings: on stderr
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
    out, err = capsys.readouterr()
    store = SweepStore(cells_dir(tmp_path).parent)
    status = {r["name"]: r["status"] for r in store.records()}
    assert status == {"baseA": "failed", "A1B": "failed", "baseB": "done", "B1B": "done"}
    assert store.read_record("random0_s0_baseA")["error"].startswith("TrainingDiverged: loss became")
    assert store.read_record("random0_s0_A1B")["error"].startswith("its base baseA failed: TrainingDiverged")
    assert "2 trained, 0 skipped, 2 failed" in out and "failed: random0_s0_baseA: TrainingDiverged" in err

    monkeypatch.setattr(runner, "train", real_train)
    assert sweep.main(args) == 0
    assert "2 trained, 2 skipped, 0 failed" in capsys.readouterr().out
    assert store.read_record("random0_s0_baseA")["attempt"] == 2


@pytest.mark.parametrize("where", ["before", "after"])
def test_ctrl_c_outside_training_exits_130_without_a_traceback(tmp_path, monkeypatch, capsys, where):
    """Ctrl-C while the data is read (before any network) or the figures are drawn (after all of
    them): exit 130, one line, the finished networks kept; the rerun has nothing left to train."""
    from transferlab import analysis

    args = TINY + [f"results_dir={tmp_path}", "analyze=true"]

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "fit_to_data", ctrl_c) if where == "before" else \
        monkeypatch.setattr(analysis, "write_figures", ctrl_c)
    assert sweep.main(args) == 130
    out, err = capsys.readouterr()
    assert "interrupted; every finished network is kept: run the same command to resume" in err
    assert "Traceback" not in out + err
    monkeypatch.undo()
    assert sweep.main(args) == 0
    trained = {"before": "3 trained, 0 skipped", "after": "0 trained, 3 skipped"}[where]
    assert trained in capsys.readouterr().out


@pytest.mark.parametrize("module", ["transferlab.sweep", "transferlab"])
@pytest.mark.parametrize("after_s", [0.3, 1.5, 4.0])
def test_ctrl_c_in_the_first_seconds_exits_130_without_a_traceback(tmp_path, module, after_s):
    """Ctrl-C while Python loads torch (0.3 s, 1.5 s) or while the dry run reads the plan (4 s):
    exit status 130 and no traceback, whichever moment it lands on."""
    cmd = [sys.executable, "-m", module, *TINY, "dry_run=true", f"results_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    finished = "wrote " in out and "splits.json" in out
    # Once the dry run has finished, the signal may land in the interpreter's exit: 0, or killed by it.
    assert proc.returncode == 130 or (finished and proc.returncode in (0, -signal.SIGINT)), out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err

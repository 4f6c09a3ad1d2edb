"""The store: writes are atomic (a failure at any point leaves the old file whole and no
temporary file), unreadable records count as not done and are reported, checkpoints load
tensors only, and the per-cell lock excludes a second holder."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
import torch

from transferlab import store as store_mod
from transferlab.store import (SweepStore, atomic_torch_save, atomic_write_bytes, atomic_write_json,
                               file_sha256, load_state)

KEY = "random0_s0_A3B"


def record(**extra) -> dict:
    return {"status": "done", "name": "A3B", "metrics": {"val_top1": 0.5}, **extra}


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_writes_leave_only_the_file(tmp_path):
    path = tmp_path / "deep" / "er" / "record.json"
    atomic_write_json(path, record())
    atomic_write_json(path, record(run=2))  # overwrite
    assert json.loads(path.read_text()) == record(run=2)
    assert files(path.parent) == ["record.json"]
    # Readable by the lab's group like any file the user writes (mkstemp alone would give 0600).
    assert path.stat().st_mode & 0o777 == 0o666 & ~store_mod._UMASK
    atomic_write_bytes(tmp_path / "b", b"\x00\x01")
    assert (tmp_path / "b").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("fail_at", ["os.replace", "os.fsync"])
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_record_whole(tmp_path, monkeypatch, fail_at, error):
    path = tmp_path / "record.json"
    atomic_write_json(path, record())
    old = path.read_bytes()

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(os, fail_at.split(".")[1], fail)
    with pytest.raises(type(error)):
        atomic_write_json(path, record(status="failed", error="x" * 100_000))
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert files(tmp_path) == ["record.json"]  # no temporary file left behind


def test_a_failed_first_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        atomic_write_json(tmp_path / "record.json", record())
    monkeypatch.undo()
    assert files(tmp_path) == []
    assert SweepStore(tmp_path).read_record("x") is None


class Payload:
    """An arbitrary object in a checkpoint: unpickling such things could run any code."""


def test_checkpoints_round_trip_and_load_tensors_only(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "step": 3, "history": [{"epoch": 1, "loss": 0.5}]}
    atomic_torch_save(tmp_path / "model.pt", state)
    back = load_state(tmp_path / "model.pt")
    assert torch.equal(back["w"], state["w"]) and back["step"] == 3 and back["history"] == state["history"]
    assert files(tmp_path) == ["model.pt"]

    torch.save({"evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_state(tmp_path / "evil.pt")


def make_store(tmp_path, text: str | bytes | None = None) -> SweepStore:
    s = SweepStore(tmp_path / "sweep")
    atomic_write_json(s.record_path(KEY), record())
    if text is not None:
        path = s.record_path(KEY)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return s


@pytest.mark.parametrize("bad", ["truncated", "", "[1, 2]", '{"name": "A3B"}', b"\xff\xfe\x00garbage"])
def test_unreadable_record_is_not_done_and_reported_once(tmp_path, capsys, bad):
    s = make_store(tmp_path)
    good = s.record_path(KEY).read_text()
    if bad == "truncated":
        bad = good[: len(good) // 2]
    s = make_store(tmp_path, bad)
    assert s.read_record(KEY) is None
    assert not s.is_done(KEY)
    assert s.records() == []
    out = capsys.readouterr().err  # a warning: on stderr
    assert out.count("warning:") == 1, out  # said once, however often it is read
    assert str(s.record_path(KEY)) in out and "corrupted" in out and "recomputed" in out


def test_done_failed_and_missing_records(tmp_path):
    s = SweepStore(tmp_path)
    assert s.read_record(KEY) is None and not s.is_done(KEY)
    atomic_write_json(s.record_path(KEY), record(status="failed"))
    assert not s.is_done(KEY) and s.read_record(KEY)["status"] == "failed"
    atomic_write_json(s.record_path(KEY), record())
    assert s.is_done(KEY)
    atomic_write_json(s.record_path("random0_s0_baseB"), record(name="baseB"))
    assert [r["name"] for r in s.records()] == ["A3B", "baseB"]


def test_a_model_file_that_differs_from_its_record_is_not_done(tmp_path, capsys):
    s = SweepStore(tmp_path)
    atomic_torch_save(s.model_path(KEY), {"w": torch.ones(3)})
    atomic_write_json(s.record_path(KEY), record(model_sha256=file_sha256(s.model_path(KEY))))
    assert s.is_done(KEY, need_model=True)
    atomic_torch_save(s.model_path(KEY), {"w": torch.zeros(3)})  # replaced behind the record's back
    assert s.is_done(KEY) and not s.is_done(KEY, need_model=True)
    assert "sha256 differs" in capsys.readouterr().err
    s.model_path(KEY).unlink()
    assert not s.is_done(KEY, need_model=True)


def test_lock_excludes_a_second_holder_until_released(tmp_path):
    s = SweepStore(tmp_path)
    with s.lock(KEY) as mine:
        assert mine
        with s.lock(KEY, blocking=False) as second:
            assert not second
        with s.lock("random0_s0_baseB", blocking=False) as other_cell:
            assert other_cell  # locks are per cell
    with s.lock(KEY, blocking=False) as again:
        assert again


def test_blocking_lock_waits_for_the_holder(tmp_path):
    s = SweepStore(tmp_path)
    order, held = [], threading.Event()

    def holder():
        with s.lock(KEY):
            held.set()
            time.sleep(0.3)
            order.append("holder released")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    with s.lock(KEY) as mine:
        assert mine
        order.append("waiter took it")
    t.join()
    assert order == ["holder released", "waiter took it"]


def test_start_attempt_counts_and_sweeps_up_stale_temporaries(tmp_path):
    s = SweepStore(tmp_path)
    s.cell_dir(KEY).mkdir(parents=True)
    stale = s.cell_dir(KEY) / ".record.json.abc123.tmp"  # what a writer killed mid-write leaves
    stale.write_text("{half")
    assert s.start_attempt(KEY) == 1
    assert not stale.exists()
    assert s.start_attempt(KEY) == 2
    (s.cell_dir(KEY) / "attempts").write_text("garbage")
    assert s.start_attempt(KEY) == 1

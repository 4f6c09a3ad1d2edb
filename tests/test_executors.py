"""The executors behind launcher=local | submitit_local | slurm: one worker, one loop."""
from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import tiny

from transferlab import executors, machine, sweep
from transferlab.config import ConfigError, compose
from transferlab.executors import local, slurm
from transferlab.executors import Worker, make_executor, slurm_parameters, squeue_states, worker_config
from transferlab.store import SweepStore, load_state

TINY = tiny("n=1,2", "treatments=[selffer,transfer]", "data.train_per_class=16", "data.val_per_class=8",
            "train.batch_size=16", "train.epochs=2", "analyze=false")


def results(root: Path) -> dict:
    """{key: (final metrics without timings, weights)} of every record under a sweep folder."""
    out = {}
    for rec in SweepStore(root).records():
        m = {k: v for k, v in rec["metrics"].items() if k != "time"}
        out[rec["key"]] = (rec["status"], m, load_state(root / "cells" / rec["key"] / "model.pt"))
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key][:2] == b[key][:2], key
        for name, t in a[key][2].items():
            assert torch.equal(t, b[key][2][name]), f"{key}: {name}"


def test_worker_pickles_and_checkpoints_to_the_same_call(tmp_path):
    import submitit

    cfg = compose(TINY + [f"results_dir={tmp_path}"])
    w = Worker(worker_config(cfg, tmp_path / "s"), "run-1", cuda_devices="1")
    assert pickle.loads(pickle.dumps(w)) == w
    assert w.config["results_dir"] == str(tmp_path) and w.config["name"] == "s"
    again = w.checkpoint(["k1"])
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is w and again.args == (["k1"],)


def test_a_worker_given_a_cell_trains_the_base_it_needs(tmp_path):
    cfg = compose(TINY + [f"results_dir={tmp_path}"])
    root = tmp_path / "s"
    counts = Worker(worker_config(cfg, root), "run-1")(["random0_s0_A1B"])
    assert counts == {"trained": 2, "skipped": 0, "failed": 0}
    recs = {r["key"]: r for r in SweepStore(root).records()}
    assert set(recs) == {"random0_s0_baseA", "random0_s0_A1B"}
    assert all(r["run_id"] == "run-1" and r["status"] == "done" for r in recs.values())


def test_local_workers_train_each_network_once_and_match_in_process(tmp_path, capsys):
    """Every network computes on train.threads CPU threads wherever it runs: the same weights
    from worker processes as from one process, one network at a time."""
    workers = 2
    assert sweep.main(TINY + [f"results_dir={tmp_path / 'ref'}", "launcher.workers=1"]) == 0
    capsys.readouterr()
    args = TINY + [f"results_dir={tmp_path / 'par'}", "launcher=submitit_local",
                   f"launcher.workers={workers}", "launcher.poll_s=0.2"]
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert f"{workers} local worker(s)" in out and "6 trained, 0 skipped, 0 failed" in out
    root = tmp_path / "par" / "synthetic-random"
    logs = "".join(p.read_text() for p in (root / "workers").glob("*_0_log.out"))
    assert logs.count(": training on task") == 6
    assert len(list((root / "workers").glob("*_0_log.out"))) == workers
    assert all(r["attempt"] == 1 and r["launcher"] == "submitit_local" for r in SweepStore(root).records())
    assert_same(results(tmp_path / "ref" / "synthetic-random"), results(root))


def test_networks_side_by_side_in_one_process_match_one_at_a_time(tmp_path, capsys):
    assert sweep.main(TINY + [f"results_dir={tmp_path / 'one'}", "launcher.workers=1"]) == 0
    capsys.readouterr()
    assert sweep.main(TINY + [f"results_dir={tmp_path / 'two'}", "launcher.workers=2"]) == 0
    out = capsys.readouterr().out
    assert "2 networks at a time in this process, 1 CPU thread(s) each" in out
    assert out.count(": training on task") == 6 and "6 trained, 0 skipped, 0 failed" in out
    assert "already finished" not in out            # no network is announced twice
    assert_same(results(tmp_path / "one" / "synthetic-random"), results(tmp_path / "two" / "synthetic-random"))


def test_local_workers_auto_is_cores_over_threads_on_a_cpu(monkeypatch):
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert executors.local_workers(compose([]), cpu) == 8
    assert executors.local_workers(compose(["train.threads=2"]), cpu) == 4
    assert executors.local_workers(compose(["train.threads=16"]), cpu) == 1
    assert executors.local_workers(compose([]), cuda) == 1
    assert executors.local_workers(compose(["train.compile=true"]), cpu) == 1
    assert executors.local_workers(compose([]), cpu, files=True) == 1    # DataLoader workers use the cores
    assert executors.local_workers(compose(["launcher.workers=3"]), cuda) == 3
    with pytest.raises(ConfigError, match="launcher.workers=0"):
        make_executor(compose(["launcher.workers=0"]))


def test_slurm_parameters_follow_the_launcher_config():
    cfg = compose(["launcher=slurm", "launcher.partition=gpu", "launcher.gpus_per_task=2",
                   "launcher.timeout_min=90", "launcher.array_parallelism=8", "launcher.mem_gb=32",
                   "+launcher.additional_parameters.mail-type=END"])
    p = slurm_parameters(cfg.launcher)
    assert p == {"partition": "gpu", "gpus_per_task": 2, "cpus_per_task": 4, "mem": "32GB", "time": 90,
                 "array_parallelism": 8, "signal_delay_s": 120, "additional_parameters": {"mail-type": "END"}}
    import submitit  # every key is one SlurmExecutor accepts

    assert set(p) <= submitit.SlurmExecutor._valid_parameters()


def test_launcher_errors_are_reported_before_any_training(monkeypatch):
    with pytest.raises(ConfigError, match="launcher.workers=0"):
        make_executor(compose(["launcher=submitit_local", "launcher.workers=0"]))
    monkeypatch.setattr(executors.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="launcher=slurm needs Slurm's sbatch, squeue, srun on PATH"):
        make_executor(compose(["launcher=slurm"]))
    monkeypatch.setattr(executors.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ConfigError, match="launcher.timeout_min=0"):
        make_executor(compose(["launcher=slurm", "launcher.timeout_min=0"]))


def test_squeue_states_lists_only_this_sweeps_tasks(monkeypatch):
    listing = "41|41_0|RUNNING\n41|41_1|PENDING\n7|7|RUNNING\n42|42_3|PENDING\n"
    monkeypatch.setattr(slurm.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=listing, stderr=""))
    assert squeue_states(["41", "42"]) == {"41_0": "RUNNING", "41_1": "PENDING", "42_3": "PENDING"}
    assert squeue_states([]) == {}


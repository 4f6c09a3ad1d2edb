"""launcher=slurm on a real single-node Slurm cluster (scripts/slurm_cluster.sh): the sweep runs
as two job arrays (bases, then cells), every record lands and equals an in-process run; a task
preempted mid-cell (SIGUSR2, as Slurm sends before preemption or the time limit) is
checkpointed and requeued by submitit and resumes from the cell's last epoch.

Needs root (slurmd launches the jobs) and Slurm installed (`bash scripts/slurm_cluster.sh
install`); skipped otherwise, except in CI (CI=true), where a cluster that cannot start fails.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny, without_timing
import torch

from transferlab import sweep
from transferlab.store import SweepStore, load_state

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TINY = tiny("n=1", "treatments=[transfer]", "data.val_per_class=8", "train.batch_size=16", "analyze=false")
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.gpus_per_task=0", "launcher.cpus_per_task=1",
         "launcher.timeout_min=10", "launcher.poll_s=1"]


def _unavailable(why: str):
    if IN_CI:
        pytest.fail(f"CI must run the Slurm tests, but {why}")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster of our own (own config, munge socket and ports): the environment to reach it."""
    if os.geteuid() != 0:
        _unavailable("starting slurmd needs root")
    if shutil.which("slurmctld") is None and not IN_CI:
        _unavailable("Slurm is not installed (as root: bash scripts/slurm_cluster.sh install)")
    folder = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, TRANSFERLAB_SLURMCTLD_PORT=str(_free_port()), TRANSFERLAB_SLURMD_PORT=str(_free_port()))
    t0 = time.time()
    started = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], env=env, capture_output=True,
                             text=True, timeout=600)
    try:
        if started.returncode != 0:
            _unavailable(f"the Slurm cluster did not start:\n{started.stdout}{started.stderr}")
        print(f"Slurm cluster up in {time.time() - t0:.1f}s")
        yield dict(env, SLURM_CONF=str(folder / "slurm.conf"))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], env=env, timeout=120)


@pytest.fixture
def in_process(tmp_path):
    """The reference: the same sweep in this process (every network on train.threads threads)."""
    def run(*args: str) -> Path:
        assert sweep.main([*TINY, *args, f"results_dir={tmp_path / 'ref'}"]) == 0
        return tmp_path / "ref" / "synthetic-random"
    return run


def slurm_sweep(env, results: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "transferlab.sweep", *TINY, *SLURM, *args, f"results_dir={results}"]
    out = subprocess.run(cmd, env=env, cwd=results.parent, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def assert_same_results(ref: Path, root: Path) -> None:
    a, b = SweepStore(ref).records(), SweepStore(root).records()
    assert [r["key"] for r in a] == [r["key"] for r in b] and a
    for ra, rb in zip(a, b):
        assert ra["status"] == rb["status"] == "done"
        assert without_timing(ra["metrics"]) == without_timing(rb["metrics"]), ra["key"]
        wa, wb = (load_state(r / "cells" / ra["key"] / "model.pt") for r in (ref, root))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), ra["key"]


def test_sweep_runs_as_two_job_arrays_and_matches_in_process(cluster, tmp_path, in_process):
    t0 = time.time()
    out = slurm_sweep(cluster, tmp_path / "slurm", "data.train_per_class=16", "train.epochs=2",
                      "n=1,2", "treatments=[selffer,transfer]", "launcher.wait=true").stdout
    print(f"Slurm sweep of 6 networks: {time.time() - t0:.1f}s")
    root = tmp_path / "slurm" / "synthetic-random"
    [sub] = json.loads((root / "slurm" / "jobs.json").read_text())
    bases_id, cells_id = sub["job_ids"]
    assert sub["keys"][bases_id] == ["random0_s0_baseB", "random0_s0_baseA"]
    assert len(sub["keys"][cells_id]) == 4
    assert f"submitted bases: job array {bases_id}" in out
    assert f"submitted cells: job array {cells_id} (4 task(s), cells after afterany:{bases_id})" in out
    assert "6 trained, 0 skipped, 0 failed" in out
    for rec in SweepStore(root).records():
        array = bases_id if rec["treatment"] == "base" else cells_id
        assert rec["slurm"]["array_job_id"] == array and rec["attempt"] == 1 and rec["launcher"] == "slurm"
        task = sub["keys"][array].index(rec["key"])
        log = (root / "slurm" / f"{array}_{task}_0_log.out").read_text()
        assert f"] {rec['name']} ({rec['key']}): val top1" in log  # its own task trained it
    ref = in_process("data.train_per_class=16", "train.epochs=2", "n=1,2", "treatments=[selffer,transfer]")
    assert_same_results(ref, root)

    again = slurm_sweep(cluster, tmp_path / "slurm", "data.train_per_class=16", "train.epochs=2",
                        "n=1,2", "treatments=[selffer,transfer]").stdout
    assert "0 trained, 6 skipped, 0 failed" in again and "submitted" not in again


def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(cluster, tmp_path, in_process):
    args = ("data.train_per_class=64", "train.epochs=20")
    t0 = time.time()
    out = slurm_sweep(cluster, tmp_path / "slurm", *args, "launcher.wait=false").stdout
    assert "follow them with" in out and "squeue -j" in out  # submitted, not waited for
    root = tmp_path / "slurm" / "synthetic-random"
    [sub] = json.loads((root / "slurm" / "jobs.json").read_text())
    cells_id = sub["job_ids"][1]
    assert sub["keys"][cells_id] == ["random0_s0_A1B"]

    # Preempt A1B's task as soon as it has checkpointed an epoch: Slurm's preemption and
    # time-limit warning is SIGUSR2 (--signal=USR2@...), which submitit turns into a requeue.
    ckpt = root / "cells" / "random0_s0_A1B" / "checkpoint.pt"
    while not ckpt.exists():
        assert time.time() - t0 < 240, "A1B never wrote a checkpoint"
        time.sleep(0.01)
    subprocess.run(["scancel", "--signal=USR2", cells_id], env=cluster, check=True)

    # The same command again: shows progress and waits, without submitting anything twice.
    again = slurm_sweep(cluster, tmp_path / "slurm", *args, "launcher.wait=true").stdout
    print(f"Slurm sweep with a preemption: {time.time() - t0:.1f}s")
    assert "still queued or running" in again and "submitted" not in again
    assert "3 trained, 0 skipped, 0 failed" in again  # trained by the run it waited for
    assert len(json.loads((root / "slurm" / "jobs.json").read_text())) == 1
    rec = SweepStore(root).read_record("random0_s0_A1B")
    assert rec["status"] == "done" and rec["attempt"] == 2 and rec["slurm"]["restart_count"] == "1"
    assert 1 <= rec["resumed_from_epoch"] < 20
    log = "".join(p.read_text() for p in (root / "slurm").glob(f"{cells_id}_*_log.*"))
    assert "SIGUSR2" in log and f"resuming from the checkpoint of epoch {rec['resumed_from_epoch']}" in log
    assert_same_results(in_process(*args), root)


def test_slurm_reads_mem_gb_in_gigabytes(cluster, tmp_path, monkeypatch):
    """What Slurm itself records for launcher.mem_gb, on a held job that never runs: 32 GB, not
    the 32 MB that a bare --mem=32 asks for."""
    from transferlab.config import compose
    from transferlab.executors import slurm

    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    for mem_gb, recorded in (("32", "32G"), ("1.5", "1.50G")):
        lc = compose(["launcher=slurm", "launcher.partition=debug", "launcher.gpus_per_task=0",
                      "launcher.cpus_per_task=1", f"launcher.mem_gb={mem_gb}",
                      "+launcher.additional_parameters.hold=true"]).launcher
        job = slurm.slurm_executor(lc, tmp_path / "slurm", "transferlab-mem").submit(print, "never runs")
        try:
            info = subprocess.run(["scontrol", "show", "job", job.job_id], env=cluster, capture_output=True,
                                  text=True, check=True).stdout
        finally:
            subprocess.run(["scancel", job.job_id], env=cluster, timeout=60)
        assert f"MinMemoryNode={recorded}" in info, info

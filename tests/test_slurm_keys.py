"""launcher=slurm's keys, as the sbatch script submitit writes for them (no cluster needed): the
names and units of hydra-submitit-launcher (mem_gb in GB, mem_per_gpu a Slurm size string,
gres, gpus_per_node, cpus_per_gpu, ...); a null key writes no line; a bad value is refused,
naming the key, before anything is planned or submitted."""
from __future__ import annotations

import pytest
import submitit

from conftest import tiny

from transferlab import executors, sweep
from transferlab.config import ConfigError, compose
from transferlab.executors import make_executor, slurm


@pytest.fixture
def sbatch(tmp_path, monkeypatch):
    """overrides -> {sbatch option: value} of the script launcher=slurm submits (the executor
    built as SlurmArrays.submit builds it; submitit's own check for srun is bypassed)."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))

    def render(*overrides: str, dependency: str | None = None) -> dict[str, str]:
        lc = compose(["launcher=slurm", *overrides]).launcher
        ex = slurm.slurm_executor(lc, tmp_path / "slurm", "transferlab-test-cells", dependency)
        assert ex.max_num_timeout == lc.max_num_timeout
        text = ex._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
        render.text = text
        lines = [line.removeprefix("#SBATCH --") for line in text.splitlines() if line.startswith("#SBATCH")]
        return dict((line.split("=", 1) + [""])[:2] for line in lines)
    return render


# Options that submitit writes whatever the launcher config says.
# ntasks-per-node=1: one network per array task (and Slurm 22.05 refuses --gpus-per-task with
# --cpus-per-task but no task count).
SUBMITIT_OWN = {"job-name", "nodes", "ntasks-per-node", "time", "signal", "output", "error", "open-mode", "wckey"}


def test_mem_gb_is_in_gigabytes(sbatch):
    assert sbatch("launcher.mem_gb=32")["mem"] == "32GB"      # not --mem=32: Slurm reads that as 32 MB
    assert sbatch("launcher.mem_gb=1.5")["mem"] == "1536MB"
    assert sbatch("launcher.mem_gb=0.0001")["mem"] == "1MB"   # never rounded down to 0 (all of a node's memory)
    assert "mem" not in sbatch("launcher.mem_gb=null")


def test_gpu_keys_as_sbatch_lines(sbatch):
    p = sbatch("launcher.gres=gpu:2", "launcher.gpus_per_task=null")
    assert p["gres"] == "gpu:2" and "gpus-per-task" not in p
    assert sbatch("launcher.gres=gpu:a100:1", "launcher.gpus_per_task=0")["gres"] == "gpu:a100:1"
    assert sbatch("launcher.gres=nvme:1")["gres"] == "nvme:1"  # not GPUs: goes with gpus_per_task
    p = sbatch("launcher.gpus_per_node=2", "launcher.gpus_per_task=null")
    assert p["gpus-per-node"] == "2" and "gpus-per-task" not in p
    p = sbatch("launcher.cpus_per_gpu=8", "launcher.cpus_per_task=null", "launcher.gpus_per_task=2")
    assert (p["cpus-per-gpu"], p["gpus-per-task"]) == ("8", "2") and "cpus-per-task" not in p
    p = sbatch("launcher.mem_per_gpu=16G", "launcher.gres=gpu:2", "launcher.gpus_per_task=null")
    assert (p["mem-per-gpu"], p["gres"]) == ("16G", "gpu:2") and "mem" not in p
    assert sbatch("launcher.mem_per_gpu=1024M")["mem-per-gpu"] == "1024M"


def test_the_default_launcher_writes_only_its_set_keys(sbatch):
    p = sbatch()
    assert set(p) == SUBMITIT_OWN | {"gpus-per-task", "cpus-per-task"}, p
    assert (p["gpus-per-task"], p["cpus-per-task"], p["time"], p["signal"]) == ("1", "4", "240", "USR2@120")
    assert (p["job-name"], p["nodes"], p["ntasks-per-node"]) == ("transferlab-test-cells", "1", "1")


def test_null_keys_write_no_line(sbatch):
    keys = ["partition", "account", "qos", "constraint", "exclude", "comment", "gres", "gpus_per_node",
            "gpus_per_task", "cpus_per_task", "cpus_per_gpu", "mem_gb", "mem_per_gpu"]
    assert set(sbatch(*[f"launcher.{k}=null" for k in keys])) == SUBMITIT_OWN
    # a count of GPUs of 0 asks for none: no line either
    assert set(sbatch("launcher.gpus_per_task=0", "launcher.gpus_per_node=0")) == SUBMITIT_OWN | {"cpus-per-task"}


def test_every_other_key_as_its_sbatch_line(sbatch):
    p = sbatch("launcher.partition=gpu", "launcher.account=lab", "launcher.qos=high", "launcher.constraint=a100",
               "launcher.exclude='node[1-3]'", "launcher.comment=transfer", "launcher.timeout_min=90",
               "launcher.signal_delay_s=60", "launcher.gpus_per_task=2", "launcher.cpus_per_task=9",
               "launcher.setup=[module load cuda]", "+launcher.additional_parameters.mail-type=END",
               dependency="afterany:4242")
    assert {k: p[k] for k in ("partition", "account", "qos", "constraint", "exclude", "comment", "time",
                              "signal", "gpus-per-task", "cpus-per-task", "mail-type", "dependency")} == {
        "partition": "gpu", "account": "lab", "qos": "high", "constraint": "a100", "exclude": "'node[1-3]'",
        "comment": "transfer", "time": "90", "signal": "USR2@60", "gpus-per-task": "2", "cpus-per-task": "9",
        "mail-type": "END", "dependency": "afterany:4242"}
    assert "\n# setup\nmodule load cuda\n" in sbatch.text


def test_array_parallelism_caps_the_array(sbatch, tmp_path):
    lc = compose(["launcher=slurm", "launcher.array_parallelism=3"]).launcher
    ex = slurm.slurm_executor(lc, tmp_path / "slurm", "x")
    ex.parameters["map_count"] = 10  # as submitit's map_array sets it
    assert "#SBATCH --array=0-9%3" in ex._make_submission_file_text("cmd", "uid").splitlines()


BAD = [
    ("launcher.mem_gb=0", "launcher.mem_gb=0 is not valid; expected a number > 0 or null"),
    ("launcher.mem_gb=-4", "launcher.mem_gb=-4 is not valid"),
    ("launcher.gpus_per_node=-1", "launcher.gpus_per_node=-1 is not valid; expected an integer >= 0 or null"),
    ("launcher.gpus_per_node=2.5", "launcher.gpus_per_node=2.5 is not valid; expected an integer"),
    ("launcher.gpus_per_task=-1", "launcher.gpus_per_task=-1 is not valid"),
    ("launcher.cpus_per_gpu=0", "launcher.cpus_per_gpu=0 is not valid; expected an integer >= 1 or null"),
    ("launcher.cpus_per_task=0", "launcher.cpus_per_task=0 is not valid; expected an integer >= 1 or null"),
    ("launcher.gres={a: 1}", "launcher.gres={'a': 1} is not valid; expected a string or null"),
    ("launcher.mem_per_gpu=16", "launcher.mem_per_gpu=16 is not valid; expected"),     # Slurm: 16 MB
    ("launcher.mem_per_gpu=1.5G", "launcher.mem_per_gpu='1.5G' is not valid"),        # Slurm: whole numbers
    ("launcher.mem_per_gpu=lots", "launcher.mem_per_gpu='lots' is not valid"),
    ("launcher.mem_per_gpu=0G", "launcher.mem_per_gpu='0G' is not valid"),
    ("launcher.timeout_min=0", "launcher.timeout_min=0 is not valid; expected an integer >= 1"),
    ("launcher.timeout_min=null", "launcher.timeout_min=None is not valid"),
    ("launcher.array_parallelism=0", "launcher.array_parallelism=0 is not valid"),
    ("launcher.signal_delay_s=-1", "launcher.signal_delay_s=-1 is not valid"),
    ("launcher.max_num_timeout=-1", "launcher.max_num_timeout=-1 is not valid"),
    ("launcher.gpus_pernode=2", "launcher.gpus_pernode is not a config key (did you mean launcher.gpus_per_node?)"),
    # what sbatch refuses together (Slurm 22.05)
    (["launcher.mem_gb=32", "launcher.mem_per_gpu=16G"],
     "launcher.mem_gb=32 and launcher.mem_per_gpu=16G cannot both be set (sbatch refuses --mem with --mem-per-gpu)"),
    (["launcher.cpus_per_gpu=8"], "launcher.cpus_per_gpu=8 and launcher.cpus_per_task=4 cannot both be set"),
    (["launcher.gres=gpu:2"], "launcher.gres=gpu:2 and launcher.gpus_per_task=1 cannot both be set"),
    (["launcher.gpus_per_node=2"], "launcher.gpus_per_node=2 and launcher.gpus_per_task=1 cannot both be set"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[str(o) for o, _ in BAD])
def test_a_bad_value_is_refused_naming_the_key(overrides, message, monkeypatch):
    overrides = [overrides] if isinstance(overrides, str) else overrides
    monkeypatch.setattr(executors.shutil, "which", lambda name: f"/usr/bin/{name}")  # as on a login node
    with pytest.raises(ConfigError) as e:
        make_executor(compose(["launcher=slurm", *overrides]))
    assert message in str(e.value), str(e.value)


def test_a_bad_value_stops_the_sweep_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(executors.shutil, "which", lambda name: f"/usr/bin/{name}")
    code = sweep.main([*tiny("n=1"), "launcher=slurm", "launcher.mem_per_gpu=16", f"results_dir={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "launcher.mem_per_gpu=16 is not valid" in err and "16G" in err, err
    assert not any(tmp_path.iterdir())  # no sweep folder, nothing submitted

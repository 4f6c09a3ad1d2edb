"""The sweep's command line as Hydra users expect it: --help [GROUP] from the composed config,
--cfg job|all with --resolve and -p, hydra.* keys that take effect (or are refused by name),
-m as one sweep per combination, clear errors for unknown flags and comma lists without -m,
and no traceback when the reader of stdout leaves early. Nothing here trains."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
import yaml
from conftest import TINY
from omegaconf import OmegaConf

from transferlab import cli, sweep
from transferlab.config import GROUPS, compose, group_options, results_root


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sweep.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def cfg_yaml(*argv: str):
    rc, out, err = run("--cfg", *argv)
    assert rc == 0, out + err
    return yaml.safe_load(out)


def text(v) -> str:
    return cli._text(v)


# ---------------------------------------------------------------------------------- --help

def test_help_lists_every_group_option_default_key_flag_and_example():
    rc, out, err = run("--help")
    assert rc == 0, err
    assert out.startswith("usage: python -m transferlab.sweep")
    defaults = {"data": "synthetic", "model": "caffenet", "split": "random", "train": "small", "launcher": "local"}
    section = out.split("Config groups", 1)[1].split("\n\n", 1)[0].replace("\n" + " " * 14, " ")  # unwrapped
    for g in GROUPS:
        line = section.split(f"\n  {g:<11} ", 1)[1].split("\n", 1)[0]
        assert all(o in line for o in group_options(g)), (g, line)
        if g in defaults:
            assert f"{defaults[g]} (default)" in line
    cfg = compose([])
    for k, v in cfg.items():  # from the composed config: a new key shows up by itself
        if k not in GROUPS and not OmegaConf.is_dict(v):
            assert f"  {k}={text(OmegaConf.to_container(v) if OmegaConf.is_list(v) else v)} " in out, k
    assert "  probe.*" in out and "  split.seed=0 " in out
    for k in cli.MAIN_TRAIN:
        assert f"  train.{k}={text(cfg.train[k])}" in out
    for flag in ("--help", "--cfg", "--resolve", "--package", "--multirun", "hydra.run.dir"):
        assert flag in out
    for example in [line.strip() for line in sweep.__doc__.splitlines() if line.strip().startswith("python -m")]:
        assert example in out


def test_help_applies_the_overrides_given():
    rc, out, _ = run("--help", "train.epochs=7", "model=vgg11")
    assert rc == 0
    assert "  train.epochs=7 " in out and "vgg11 (chosen)" in out and "caffenet (default)" in out


@pytest.mark.parametrize("topic, overrides, group", [
    ("train", [], "train"), ("train=cifar", [], "train"), ("launcher=slurm", [], "launcher"),
    ("data=imagefolder", [], "data"), ("probe", [], "probe"), ("model", ["model=vgg11"], "model")])
def test_help_group_lists_every_key_of_the_option(topic, overrides, group):
    rc, out, err = run("--help", topic, *overrides)
    assert rc == 0, err
    node = OmegaConf.to_container(compose([*overrides, *([topic] if "=" in topic else [])])[group])
    for key, value in cli._flat(node, group):
        assert f"  {key}={text(value)}" in out, key
    if "=" in topic:
        assert out.startswith(f"{topic} (options: ")


def test_help_group_follows_the_option_chosen():
    assert "  train.batch_size=128" in run("--help", "train=cifar")[1]
    assert "  train.batch_size=64" in run("--help", "train")[1]


def test_help_of_an_unknown_group_names_the_groups():
    rc, _, err = run("--help", "trian")
    assert rc == 2 and "did you mean train?" in err and "launcher" in err


# ----------------------------------------------------------------------------------- --cfg

@pytest.mark.parametrize("flags", [["--cfg"], ["--cfg", "job"], ["--cfg=job"], ["-c", "job"]])
def test_cfg_job_is_the_composed_config(flags):
    rc, out, err = run(*flags, "train.epochs=3", "n=1,3")
    assert rc == 0, err
    assert yaml.safe_load(out) == OmegaConf.to_container(compose(["train.epochs=3", "n=1,3"]))


def test_cfg_resolve_and_package():
    assert cfg_yaml("-p", "data.image_size", "data=imagefolder") == "${.augment.crop}"
    assert cfg_yaml("--resolve", "-p", "data.image_size", "data=imagefolder") == "auto"
    assert cfg_yaml("job", "-p", "train", "train=cifar") == OmegaConf.to_container(compose(["train=cifar"]).train)
    assert cfg_yaml("--package", "train.lr", "train.lr=0.5") == 0.5


def test_cfg_all_resolves_and_adds_what_the_run_derives(tmp_path):
    c = cfg_yaml("all", "data=imagefolder", "device=cpu", f"results_dir={tmp_path}", "name=x")
    assert c["data"]["image_size"] == "auto"  # resolved
    assert c["derived"] == {"sweep_folder": str(tmp_path / "x"), "device": "cpu", "precision": "fp32", "threads": 1}
    assert cfg_yaml("all", "-p", "derived.precision", "device=cpu", "train.precision=bf16") == "bf16"


@pytest.mark.parametrize("argv, words", [
    (["--cfg", "foo"], ["'foo' is not valid", "job", "all"]),
    (["--cfg", "hydra"], ["compose API", "hydra.run.dir", "hydra.verbose"]),
    (["-p", "train"], ["go with --cfg"]),
    (["--resolve"], ["go with --cfg"]),
    (["--cfg", "-p"], ["-p needs a config key"]),
    (["--cfg", "-p", "train.foo"], ["'foo' is not a key there", "epochs"]),
])
def test_cfg_mistakes_name_what_is_allowed(argv, words):
    rc, _, err = run(*argv)
    assert rc == 2 and all(w in err for w in words), err


# ----------------------------------------------------------------------------------- flags

@pytest.mark.parametrize("flag, hint", [("--foo", ""), ("--multi-run", "did you mean --multirun?"),
                                        ("--hepl", "did you mean --help?"), ("--info", "@hydra.main")])
def test_unknown_flags_list_the_allowed_ones(flag, hint):
    rc, _, err = run(flag)
    assert rc == 2 and f"unknown flag '{flag}'" in err and hint in err
    assert cli.ALLOWED_FLAGS in err and "Lexer" not in err


# ----------------------------------------------------------------------------- hydra.* keys

@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_hydra_dir_sets_the_sweep_folder_exactly(key, tmp_path):
    folder = tmp_path / "deep" / "my-sweep"
    mapped = cli.map_hydra_keys([f"{key}={folder}"])
    assert results_root(compose(mapped)) == folder
    assert cfg_yaml("all", "-p", "derived.sweep_folder", f"{key}={folder}") == str(folder)


def test_hydra_job_name_and_verbose_set_our_keys():
    assert cfg_yaml("-p", "name", "hydra.job.name=zz") == "zz"
    assert cfg_yaml("-p", "verbose", "hydra.verbose=true") is True


@pytest.mark.parametrize("override, words", [
    ("hydra.launcher.partition=gpu", ["hydra.launcher.partition=gpu' is not taken", "hydra.run.dir=DIR"]),
    ("hydra/launcher=submitit_slurm", ["is not taken", "hydra.job.name=NAME"]),
    ("+hydra.job.chdir=true", ["is not taken"]),
    ("hydra.verbose=__main__", ["true or false"]),
    ("hydra.run.dir=/", ["needs a folder path"]),
])
def test_other_hydra_keys_are_refused_by_name(override, words):
    rc, _, err = run("--cfg", override)
    assert rc == 2 and all(w in err for w in words), err


def test_hydra_dir_and_name_together_are_refused():
    rc, _, err = run("--cfg", "hydra.run.dir=/tmp/x", "name=y")
    assert rc == 2 and "give one of them" in err


# -------------------------------------------------------------------------------- multirun

@pytest.mark.parametrize("override, key", [("train.lr=0.01,0.001", "train.lr"), ("model=caffenet,vgg11", "model"),
                                           ("train.lr=range(1,3)", "train.lr"), ("name=a,b", "name")])
def test_a_comma_list_without_m_is_an_error_suggesting_m(override, key):
    rc, _, err = run("--cfg", override)
    assert rc == 2 and f"several values for {key}; add -m (--multirun)" in err, err


def test_axes_take_comma_lists_without_m():
    assert cfg_yaml("-p", "seed", "seed=0,1") == "0,1"


def names(*argv: str) -> list[str]:
    rc, out, err = run("--cfg", "-m", "-p", "name", *argv)
    assert rc == 0, err
    return [line for line in out.splitlines() if not line.startswith("#")]


def test_multirun_is_the_cartesian_product_each_in_its_own_folder():
    assert names("train.lr=0.01,0.001", "model=caffenet,vgg11") == [
        "synthetic-random-train.lr=0.01-model=caffenet", "synthetic-random-train.lr=0.01-model=vgg11",
        "synthetic-random-train.lr=0.001-model=caffenet", "synthetic-random-train.lr=0.001-model=vgg11"]
    assert names("train.epochs=range(1,3)") == ["synthetic-random-train.epochs=1", "synthetic-random-train.epochs=2"]
    assert names("model=glob(vgg*)") == ["synthetic-random-model=vgg11", "synthetic-random-model=vgg16"]


def test_multirun_names_keep_a_given_name_and_an_interpolated_one_is_the_users():
    assert names("name=exp", "train.lr=1,2") == ["exp-train.lr=1", "exp-train.lr=2"]
    assert names("hydra.job.name=exp", "train.lr=1,2") == ["exp-train.lr=1", "exp-train.lr=2"]
    assert names("name=lr${train.lr}", "train.lr=1,2") == ["lr${train.lr}", "lr${train.lr}"]
    assert names("name=a,b") == ["a", "b"]


def test_multirun_runs_every_sweep_and_returns_the_worst_status(capsys):
    calls = []

    def fake(overrides):
        calls.append(overrides)
        return [0, 2, 1][len(calls) - 1]

    assert cli.handle(["-m", "train.lr=0.1,0.2,0.3", "dry_run=true"], fake) == 2
    assert [c[-1] for c in calls] == [f"name='synthetic-random-train.lr=0.{i}'" for i in (1, 2, 3)]
    assert all("dry_run=true" in c for c in calls)
    assert "train.lr=0.2 refused" in capsys.readouterr().out


def test_multirun_stops_at_ctrl_c():
    calls = []
    assert cli.handle(["-m", "train.lr=0.1,0.2"], lambda ov: calls.append(ov) or 130) == 130
    assert len(calls) == 1


def test_multirun_checks_every_sweep_before_running_one():
    calls = []
    err_io = io.StringIO()
    with contextlib.redirect_stderr(err_io):
        rc = cli.handle(["-m", "train.lr=0.1,-1"], lambda ov: calls.append(ov) or 0)
    assert rc == 2 and calls == []
    assert "sweep 2 of 2 (train.lr=-1): train.lr=-1 is not valid" in err_io.getvalue()


def test_multirun_of_the_axes_alone_is_one_sweep(capsys):
    assert cli.handle(["-m", "n=1,2", "seed=0..2"], lambda ov: pytest.fail("not a multirun")) == ["n=1,2", "seed=0..2"]
    assert "axes of one sweep already" in capsys.readouterr().out


def test_multirun_dry_runs_each_sweep_in_its_folder(tmp_path):
    rc, out, err = run("-m", *TINY, "n=1", "dry_run=true", f"hydra.sweep.dir={tmp_path / 'hs'}",
                       "train.lr=0.01,0.001")
    assert rc == 0, out + err
    for lr in ("0.01", "0.001"):
        folder = tmp_path / f"hs-train.lr={lr}"
        assert json.loads((folder / "splits.json").read_text())["dataset"] == "synthetic"
        assert f"-> {folder} on cpu" in out
    assert "multirun: 2 sweep(s): train.lr=0.01 ok, train.lr=0.001 ok" in out


# ------------------------------------------------------------------------------ broken pipe

def piped(command: str, reader: str) -> subprocess.CompletedProcess:
    return subprocess.run(f"{command} | {reader}", shell=True, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flag", ["--cfg", "--help"])
@pytest.mark.parametrize("reader", ["head -1", "true"])  # true: gone before the first write, every time
def test_a_reader_that_leaves_early_gets_no_traceback(flag, reader):
    p = piped(f"{sys.executable} -m transferlab.sweep {flag}", reader)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    if reader == "head -1":
        assert p.stdout.startswith("data:" if flag == "--cfg" else "usage:")


def test_run_quietly_ends_silently_when_the_reader_leaves():
    """The wrapper of python -m transferlab and python -m transferlab.analysis: output well past
    the pipe's buffer, so the reader leaves while it is still being written."""
    main = "from transferlab.cli import run_quietly; run_quietly(lambda: print('line\\n' * 100000) or 0)"
    p = piped(f'{sys.executable} -c "{main}"', "head -1")
    assert p.stdout == "line\n" and p.stderr == ""

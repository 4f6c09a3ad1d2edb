"""Config: every option of every group composes and validates; sweep axes parse in every
documented form; every bad input is a ConfigError naming the value and what is allowed, and
the sweep CLI reports it (exit status 2, ``error: ...``) before training anything."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from transferlab import runner, sweep
from transferlab.cells import plan
from transferlab.config import (GROUPS, ConfigError, compose, config_dir, group_options, parse_axis,
                                results_root, validate)
from transferlab.store import check_writable

OPTIONS = [(g, o) for g in GROUPS for o in group_options(g)]


def test_every_group_has_options_and_defaults_compose():
    for group in ("data", "model", "split", "train", "launcher", "experiment"):
        assert group_options(group), group
    cfg = compose([])
    validate(cfg)
    assert (cfg.data.name, cfg.model.name, cfg.split.name, cfg.launcher.name) == \
        ("synthetic", "caffenet", "random", "local")


def leaves(d, prefix: str = "") -> dict:
    """{dotted key: value} of a nested mapping."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def option_values(group: str, option: str) -> dict:
    """What an option's own file sets, as {key from the config root: value}, without
    interpolations; an experiment also what the options it selects set (unless it overrides)."""
    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"))
    defaults = raw.pop("defaults", [])
    own = {k: v for k, v in leaves(raw, "" if group == "experiment" else f"{group}.").items()
           if not (isinstance(v, str) and "${" in v)}
    out = {}
    for d in defaults:
        if isinstance(d, dict):
            for key, opt in d.items():
                if key.startswith("override /"):
                    out.update(option_values(key[len("override /"):], opt))
    return {**out, **own}


# Models too deep for the default data's 16x16 images, on data they fit (the input size follows the data).
FITTING_DATA = {"caffenet_imagenet": "imagenet", "vgg11": "cifar10", "vgg16": "cifar10"}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_validates_and_is_applied(group, option):
    data = [f"data={FITTING_DATA[option]}"] if group == "model" and option in FITTING_DATA else []
    cfg = compose([f"{group}={option}", *data])
    validate(cfg)
    assert plan(cfg)  # a sweep can be planned from it
    for key, value in option_values(group, option).items():
        assert OmegaConf.select(cfg, key) == value, f"{group}={option}: {key}"


# --------------------------------------------------------------------------- sweep axes

@pytest.mark.parametrize("value, expected", [
    ("1..7", [1, 2, 3, 4, 5, 6, 7]),
    ("2..4", [2, 3, 4]),
    (" 2 .. 4 ", [2, 3, 4]),
    ("5..5", [5]),
    ("3", [3]),
    (3, [3]),
    ("1,3,5", [1, 3, 5]),
    ("5, 1,3,1", [1, 3, 5]),
    ("[1,3,5]", [1, 3, 5]),
    ([5, 1, 3], [1, 3, 5]),
    ((2,), [2]),
])
def test_parse_axis_forms(value, expected):
    assert parse_axis(value, "n", 1, 7) == expected


@pytest.mark.parametrize("override, expected", [
    ("n=1..7", [1, 2, 3, 4, 5, 6, 7]),
    ("n=3", [3]),
    ("n=1,3,5", [1, 3, 5]),
    ("n=[1,3,5]", [1, 3, 5]),
    ("n='2..3'", [2, 3]),
    ("n=all", [1, 2, 3, 4, 5, 6, 7]),
])
def test_n_from_the_command_line(override, expected):
    cfg = compose([override])
    validate(cfg)
    assert parse_axis(cfg.n, "n", 1, 7) == expected
    assert sorted({c.n for c in plan(cfg) if c.treatment != "base"}) == expected


def test_seed_axes_from_the_command_line():
    cfg = compose(["seed=0,2", "split.seed=1..3"])
    validate(cfg)
    assert {(c.seed, c.split_seed) for c in plan(cfg)} == {(s, ss) for s in (0, 2) for ss in (1, 2, 3)}


# n outside 1..L-1 in every form; each message names the value as given and the allowed range.
BAD_N = [("n=0", "n='0'"), ("n=8", "n='8'"), ("n=9..3", "n='9..3'"), ("n=a", "n='a'"),
         ("n=1..x", "n='1..x'"), ("n=", "n=''"), ("n=1..8", "n='1..8'"), ("n=0,3", "n='0,3'"),
         ("n=-1", "n='-1'"), ("n=1.5", "n='1.5'"), ("n=true", "n='true'"), ("n=[1,9]", "n=[1, 9]")]


@pytest.mark.parametrize("override, named", BAD_N, ids=[o for o, _ in BAD_N])
def test_bad_n_is_a_config_error_naming_value_and_range(override, named):
    with pytest.raises(ConfigError) as e:
        validate(compose([override]))
    assert str(e.value).startswith(named) and "1..7" in str(e.value), str(e.value)


@pytest.mark.parametrize("value", [0, 8, [1, 8], "", "x", True, 2.5, [1, "a"], None])
def test_parse_axis_rejects(value):
    with pytest.raises(ConfigError, match=r"n=.*1\.\.7"):
        parse_axis(value, "n", 1, 7)


@pytest.mark.parametrize("override, words", [
    ("seed=-1", ["seed=", "-1", ">= 0"]),
    ("seed=a", ["seed=", "'a'"]),
    ("split.seed=x", ["split.seed=", "'x'"]),
])
def test_bad_seeds(override, words):
    with pytest.raises(ConfigError) as e:
        validate(compose([override]))
    assert all(w in str(e.value) for w in words), str(e.value)


# --------------------------------------------------------------------------- other bad input

@pytest.mark.parametrize("group", ["data", "split", "model", "train", "launcher", "experiment"])
@pytest.mark.parametrize("value", ["nonexistent", "null", ""])
def test_unknown_group_option_lists_the_allowed_ones(group, value):
    with pytest.raises(ConfigError) as e:
        compose([f"{group}={value}"])
    msg = str(e.value)
    assert f"{value!r}" in msg and group in msg
    assert all(o in msg for o in group_options(group)), msg


@pytest.mark.parametrize("override, words", [
    ("treatments=[selffer,bogus]", ["'bogus'", "selffer, selffer_ft, transfer, transfer_ft, random"]),
    ("treatments=[]", ["treatments", "selffer"]),
    ("directions=[C]", ["'C'", "A, B"]),
    ("directions=[]", ["directions", "[A, B]"]),
    ("device=tpu", ["device='tpu'", "auto", "cpu", "cuda"]),
    ("train.epochs=0", ["train.epochs=0", "> 0"]),
    ("train.lr=-1", ["train.lr=-1", "> 0"]),
    ("train.batch_size=abc", ["train.batch_size='abc'"]),
    ("train.schedule=linear", ["'linear'", "cosine, step, constant"]),
    ("train.momentum=-0.5", ["train.momentum=-0.5", ">= 0"]),
    ("name=../elsewhere", ["'../elsewhere'"]),
    ("nonexistent_key=1", ["nonexistent_key"]),
])
def test_other_bad_values_name_the_value_and_what_is_allowed(override, words):
    with pytest.raises(ConfigError) as e:
        validate(compose([override]))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_cuda_device_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device='cuda'.*not available"):
        validate(compose(["device=cuda"]))


def unwritable(tmp_path, kind: str) -> str:
    """A results_dir no process can write into, even as root (chmod does not stop root)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way\n")
    return {"file_in_the_way": str(blocker), "parent_is_a_file": str(blocker / "results"),
            "proc": "/proc/transferlab-test/results"}[kind]


@pytest.mark.parametrize("kind", ["file_in_the_way", "parent_is_a_file", "proc"])
def test_unwritable_results_directory_is_a_config_error(tmp_path, kind):
    cfg = compose([f"results_dir={unwritable(tmp_path, kind)}"])
    with pytest.raises(ConfigError, match="not writable.*results_dir="):
        check_writable(results_root(cfg))


def test_writable_check_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "sweep")
    assert [p.name for p in (tmp_path / "new" / "sweep").iterdir()] == []


# --------------------------------------------------------------------------- the CLI

CLI_BAD = [(ov, [named, "1..7"]) for ov, named in BAD_N[:6]] + [
    ("data=imagenet2", ["'imagenet2'", "synthetic", "cifar100"]),
    ("split=halves", ["'halves'", "random", "dissimilar"]),
    ("model=resnet51", ["'resnet51'", "caffenet", "caffenet_cifar", "resnet50", "vit_tiny"]),
    ("treatments=[transfer,nope]", ["'nope'", "transfer_ft"]),
    ("directions=[X]", ["'X'", "A, B"]),
    ("device=gpu", ["'gpu'", "cuda"]),
    ("data.classes_per_superclass=1 data.num_superclasses=1", ["1 class", "at least 2"]),
    ("data.num_superclasses=0", ["data.num_superclasses=0", ">= 1"]),
    ("split=dissimilar data.num_superclasses=1", ["dissimilar", "empty"]),
]


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train a network fails the test."""
    def boom(*args, **kwargs):
        raise AssertionError("a network was trained")

    monkeypatch.setattr(runner, "run_cell", boom)
    monkeypatch.setattr(runner, "train", boom)


@pytest.mark.parametrize("overrides, words", CLI_BAD, ids=[o for o, _ in CLI_BAD])
def test_cli_reports_bad_input_with_status_2_before_training(tmp_path, capsys, no_training, overrides, words):
    rc = sweep.main([*overrides.split(), "train.epochs=1", f"results_dir={tmp_path / 'results'}"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("error: "), err
    assert all(w in err for w in words), err
    assert "Traceback" not in err and "training" not in out
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.parametrize("kind", ["file_in_the_way", "parent_is_a_file", "proc"])
def test_cli_refuses_an_unwritable_results_directory(tmp_path, capsys, no_training, kind):
    where = unwritable(tmp_path, kind)
    rc = sweep.main(["n=1", "train.epochs=1", f"results_dir={where}"])
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("error: results directory ") and where in err, err
    assert "not writable" in err
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
@pytest.mark.parametrize("workers", [0, -2, "two", True])
def test_bad_launcher_workers(launcher, workers):
    from transferlab.executors import make_executor

    with pytest.raises(ConfigError, match=r"launcher.workers=.* is not valid; expected auto or an integer >= 1"):
        make_executor(compose([f"launcher={launcher}", f"launcher.workers={workers}"]))


@pytest.mark.parametrize("path", ["~/data", "/tmp/my photos (2024)/x=1", "it's here", "C:\\data\\x", "C:\\data\\",
                                  "a\\'b", "/data/[train]{v2},ok"])
def test_paths_work_unquoted(path):
    """data.root=~/data is a grammar error to Hydra unquoted; path keys take any value as written."""
    cfg = compose(["data=imagefolder", f"data.root={path}", f"model.weights={path}", f"results_dir={path}"])
    assert cfg.data.root == cfg.model.weights == cfg.results_dir == path
    assert compose(["data=imagefolder", "data.root='~/quoted'"]).data.root == "~/quoted"
    assert compose(["data=imagefolder", "data.root=null"]).data.root is None

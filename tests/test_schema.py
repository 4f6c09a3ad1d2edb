"""The config schema: every key of every group option refuses a bad value, naming the key, before
anything is planned or written; unknown keys get a did-you-mean."""
from __future__ import annotations

import typing
from typing import List
from dataclasses import fields, is_dataclass

import pytest
from omegaconf import OmegaConf

from transferlab import schema, sweep
from transferlab.config import PATH_KEYS, ConfigError, compose, group_options, validate
from transferlab.executors import make_executor

OPTIONS = [(g, o) for g in ("data", "model", "split", "train", "launcher") for o in group_options(g)]


def leaf_fields(s, prefix=""):
    """(key path, type, metadata: choices, bounds) of every leaf of a schema."""
    hints = typing.get_type_hints(s)
    for f in fields(s):
        if is_dataclass(hints[f.name]):
            yield from leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], f.metadata


def option_schema(group, option):
    cfg = compose([f"{group}={option}"])
    return schema.FIXED_SCHEMAS.get(group) or schema.GROUP_SCHEMAS[group][cfg[group].name]


def bad_value(tp, choices) -> str:
    """An override value that key's type or choices refuses."""
    if typing.get_origin(tp) is typing.Union:
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    if choices is not None or tp in (int, float, bool) or typing.get_origin(tp) in (list, dict):
        return "not_allowed_zz"
    if tp is str:
        return "{a: 1}"  # a mapping where a string belongs
    return "not_allowed_zz"  # Any: ranges and forms checked by config.validate / the launchers


def out_of_bounds(tp, b, x) -> str:
    """An override value of the right type just outside the key's bound ``b`` (ge, gt, lt, le) ``x``."""
    v = x if b in ("gt", "lt") else x - 1 if b == "ge" else x + 1
    return f"[{v}]" if typing.get_origin(tp) in (list, List) else str(v)


# A group's name is the option itself (test_config checks unknown options); a path key takes any
# text as written (config.PATH_KEYS: test_config), whether it exists is the data's and the model's check.
CASES = [(g, o, key, bad_value(tp, meta.get("choices"))) for g, o in OPTIONS
         for key, tp, meta in leaf_fields(option_schema(g, o))
         if key != "name" and f"{g}.{key}" not in PATH_KEYS]
BOUNDED = [(g, o, key, out_of_bounds(tp, b, x)) for g, o in OPTIONS   # every bound of every key
           for key, tp, meta in leaf_fields(option_schema(g, o)) for b, x in meta.get("bounds", {}).items()]


def check_everything(overrides):
    cfg = compose(overrides)
    validate(cfg)
    make_executor(cfg)


@pytest.mark.parametrize("group, option, key, value", CASES, ids=[f"{g}={o}:{k}" for g, o, k, _ in CASES])
def test_every_key_of_every_option_refuses_a_bad_value_naming_the_key(group, option, key, value):
    path = f"{group}.{key}"
    with pytest.raises(ConfigError) as e:
        check_everything([f"{group}={option}", f"{path}={value}"])
    assert path in str(e.value), str(e.value)


@pytest.mark.parametrize("group, option, key, value", BOUNDED, ids=[f"{g}={o}:{k}={v}" for g, o, k, v in BOUNDED])
def test_every_bounded_key_refuses_a_value_out_of_bounds_naming_the_key(group, option, key, value):
    path = f"{group}.{key}"
    with pytest.raises(ConfigError) as e:
        check_everything([f"{group}={option}", f"{path}={value}"])
    assert str(e.value).startswith(f"{path}="), str(e.value)


TOP = [(f.name, bad_value(typing.get_type_hints(schema.Root)[f.name], f.metadata.get("choices")))
       for f in fields(schema.Root) if f.name not in schema.GROUP_SCHEMAS and f.name not in schema.FIXED_SCHEMAS
       and f.name not in PATH_KEYS]


@pytest.mark.parametrize("key, value", TOP, ids=[k for k, _ in TOP])
def test_every_top_level_key_refuses_a_bad_value_naming_it(key, value):
    with pytest.raises(ConfigError) as e:
        check_everything([f"{key}={value}"])
    assert key in str(e.value), str(e.value)


@pytest.mark.parametrize("override, message", [
    ("+epochs=3", "epochs is not a config key (did you mean train.epochs?)"),
    ("epochs=3", "epochs is not a config key (did you mean train.epochs?)"),
    ("train.epoch=3", "train.epoch is not a config key (did you mean train.epochs?)"),
    ("+train.momentun=0.5", "train.momentun is not a config key (did you mean train.momentum?)"),
    ("launcher.workres=2", "launcher.workres is not a config key (did you mean launcher.workers?)"),
    ("model.init=xavier", "model.init='xavier' is not valid; allowed: kaiming, gaussian"),
    ("train.optimizer=adam", "train.optimizer='adam' is not valid; allowed: sgd, adamw"),
    ("train.nesterov=1", "train.nesterov=1 is not valid; expected true or false"),
    ("train.channels_last=maybe", "train.channels_last='maybe' is not valid; allowed: auto, true, false"),
    ("train.evals_per_epoch=0", "train.evals_per_epoch=0 is not valid; expected an integer >= 1"),
    ("train.evals_per_epoch=1.5", "train.evals_per_epoch=1.5 is not valid; expected an integer >= 1"),
    ("train.threads=0", "train.threads=0 is not valid; expected an integer >= 1"),
    ("train.threads=true", "train.threads=True is not valid; expected an integer >= 1"),
    ("train.feature_cache=sometimes", "train.feature_cache='sometimes' is not valid; allowed: auto, true, false, force"),
    ("model.dropout=1", "model.dropout=1 is not valid; expected a number >= 0 and < 1"),
    ("model.conv_padding=[1,1,-1,1,1]", "model.conv_padding=[1, 1, -1, 1, 1] is not valid; expected a list of integers >= 0"),
    ("launcher.workers=0", "launcher.workers=0 is not valid; expected auto or an integer >= 1"),
    ("data.train_per_class=0", "data.train_per_class=0 is not valid; expected an integer >= 1"),
])
def test_messages_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert str(e.value) == message


@pytest.mark.parametrize("override", ["model.init=xavier", "+epochs=3", "train.optimizer=adam", "data.augment.flip=3"])
def test_the_cli_refuses_before_the_sweep_folder_is_written(tmp_path, capsys, override):
    rc = sweep.main([override, f"results_dir={tmp_path / 'results'}"])
    assert rc == 2 and capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "results").exists()


def test_every_shipped_option_and_preset_fits_the_schema():
    for group, option in [*OPTIONS, *(("experiment", o) for o in group_options("experiment"))]:
        schema.check(compose([f"{group}={option}"]))


def test_the_schema_knows_every_key_the_shipped_configs_set():
    """No shipped key is missing from the schema (else a typo of it would pass as that key)."""
    known = set(schema.known_keys())

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and f"{prefix}{k}" not in known:
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    for group, option in OPTIONS:
        c = OmegaConf.to_container(compose([f"{group}={option}"]), resolve=True)
        assert set(leaves(c)) <= known


@pytest.mark.parametrize("overrides, named", [
    (["model.conv_channels=[8,16]"], "model.conv_channels=[8, 16] is not valid; CaffeNet needs 5 values"),
    (["model.fc_units=[64]"], "model.fc_units=[64] is not valid; CaffeNet needs 2 values"),
    (["model.conv_groups=[5,1,1,1,1]"], "model.conv_groups=[5, 1, 1, 1, 1] is not valid: conv1 has 3 input"),
    (["model.input_size=4", "data.image_size=4"], "model.input_size=4 is too small for the convolutions"),
    (["train.schedule=step"], "train.schedule=step needs train.step_every_epochs > 0"),
    (["data=imagenet", "data.augment.crop=300"], "data.augment.crop=300 is larger than data.augment.resize=256"),
])
def test_what_the_schema_cannot_say_is_refused_before_the_sweep_folder_is_written(tmp_path, capsys, overrides, named):
    """One key against another, and the model's shapes (built on the meta device: nothing computed)."""
    rc = sweep.main([*overrides, f"data.root={tmp_path}" if "data=imagefolder" in overrides else "n=1",
                     f"results_dir={tmp_path / 'results'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {named}"), err
    assert not (tmp_path / "results").exists()


def test_a_key_of_another_option_of_the_group_says_which_options_have_it():
    with pytest.raises(ConfigError) as e:
        compose(["model=resnet18_cifar", "model.dropout=0.5"])
    assert str(e.value) == "model.dropout is not a key of the model chosen; only model=caffenet, vgg11, vgg16 have it"
    with pytest.raises(ConfigError, match=r"^data.augment.crop is not a key of the data chosen; only data=imagefolder, imagenet"):
        compose(["data.augment.crop=8"])

"""The config schema: every key of every group option refuses a bad value, naming the key, before
anything is planned or written; unknown keys get a did-you-mean."""
from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass

import pytest
from omegaconf import OmegaConf

from transferlab import schema, sweep
from transferlab.config import ConfigError, compose, group_options, validate
from transferlab.executors import make_executor

OPTIONS = [(g, o) for g in ("data", "model", "split", "train", "launcher") for o in group_options(g)]


def leaf_fields(s, prefix=""):
    """(key path, type, choices) of every leaf of a schema."""
    hints = typing.get_type_hints(s)
    for f in fields(s):
        if is_dataclass(hints[f.name]):
            yield from leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], f.metadata.get("choices")


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


CASES = [(g, o, key, bad_value(tp, ch)) for g, o in OPTIONS for key, tp, ch in leaf_fields(option_schema(g, o))
         if key != "name"]  # a group's name is the option itself (test_config checks unknown options)


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


TOP = [(f.name, bad_value(typing.get_type_hints(schema.Root)[f.name], f.metadata.get("choices")))
       for f in fields(schema.Root) if f.name not in schema.GROUP_SCHEMAS and f.name not in schema.FIXED_SCHEMAS]


@pytest.mark.parametrize("key, value", TOP, ids=[k for k, _ in TOP])
def test_every_top_level_key_refuses_a_bad_value_naming_it(key, value):
    if key == "results_dir":
        value = "{a: 1}"
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

"""The config schema: every key of every config group, its type and, where it has one, its set
of allowed values, in one screen per group.

``check(cfg)`` runs on every composed config (config.compose), before anything is planned,
trained or written: an unknown key is refused with a did-you-mean (``+epochs=3`` too, which
Hydra would accept and nothing would read), a value of the wrong type or outside its choices
is refused naming the key and what is allowed. What a schema cannot say (ranges, n within
1..L-1, the input size against the data) is config.validate's.

We check the composed config against these dataclasses ourselves instead of merging it into
OmegaConf structured configs: that would turn enum values into Enum objects in every record
(changing what records and sweep.json hold) and its messages name neither the value nor the
allowed ones.
"""
from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from . import treatments as T

SWITCH = ("auto", True, False)


def choice(*allowed, default=None):
    """A field whose value must be one of ``allowed``."""
    return field(default=default, metadata={"choices": allowed})


# ----------------------------------------------------------------------------------- groups

@dataclass
class CropFlip:                # in-memory datasets: random crop of the padded image, mirror
    crop_padding: int = 0      # pixels
    flip: bool = False


@dataclass
class ResizeCrop:              # image folders: resize x resize, random crop x crop, mirror
    resize: int = 256          # pixels
    crop: int = 227
    flip: bool = True


@dataclass
class SyntheticData:
    name: str = "synthetic"
    seed: int = 0
    num_superclasses: int = 8
    classes_per_superclass: int = 4
    train_per_class: int = 200
    val_per_class: int = 60
    image_size: int = 16       # pixels
    augment: CropFlip = field(default_factory=CropFlip)


@dataclass
class CifarData:
    name: str = "cifar10"
    root: str = "data"
    download: bool = False
    train_per_class: Optional[int] = None
    val_per_class: Optional[int] = None
    augment: CropFlip = field(default_factory=CropFlip)


@dataclass
class FolderData:
    name: str = "imagefolder"
    root: Optional[str] = None
    train_dir: str = "train"
    val_dir: str = "val"
    hierarchy: Optional[str] = None
    train_per_class: Optional[int] = None
    val_per_class: Optional[int] = None
    num_workers: int = 4
    augment: ResizeCrop = field(default_factory=ResizeCrop)
    mean: List[float] = field(default_factory=list)   # 0..1 scale, per channel
    std: List[float] = field(default_factory=list)


@dataclass
class Lrn:
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


@dataclass
class CaffeNetModel:
    name: str = choice("caffenet", default="caffenet")
    input_size: int = 16       # pixels
    in_channels: int = 3
    conv_channels: List[int] = field(default_factory=list)
    conv_kernels: List[int] = field(default_factory=list)
    conv_strides: List[int] = field(default_factory=list)
    conv_padding: List[int] = field(default_factory=list)
    conv_groups: List[int] = field(default_factory=list)
    fc_units: List[int] = field(default_factory=list)
    pool_kernel: int = 3
    pool_stride: int = 2
    lrn: Lrn = field(default_factory=Lrn)
    dropout: float = 0.5
    init: str = choice("kaiming", "gaussian", default="kaiming")


@dataclass
class Split:
    name: str = choice("random", "dissimilar", default="random")
    seed: Any = 0              # an axis: 0, 0..3 or 0,2


@dataclass
class Train:
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = choice("sgd", "adamw", default="sgd")
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    bias_lr_mult: float = 1.0
    bias_weight_decay: bool = True
    schedule: str = choice("cosine", "step", "constant", default="cosine")
    warmup_epochs: float = 1
    step_every_epochs: float = 0
    step_gamma: float = 0.1
    label_smoothing: float = 0.1
    evals_per_epoch: Any = 2   # integers >= 1: config.validate says so in its own words
    threads: Any = 1
    grad_clip: float = 5.0
    precision: str = choice("auto", "fp32", "bf16", "fp16", default="auto")
    channels_last: Any = choice(*SWITCH, default="auto")
    cudnn_benchmark: Any = choice(*SWITCH, default="auto")
    compile: bool = False
    feature_cache: Any = choice(*SWITCH, "force", default="auto")


@dataclass
class LocalLauncher:
    name: str = "local"
    workers: Any = "auto"      # auto or an integer >= 1 (executors check it)


@dataclass
class SubmititLocalLauncher:
    name: str = "submitit_local"
    workers: Any = "auto"
    timeout_min: float = 10080
    signal_delay_s: int = 60
    poll_s: float = 10


@dataclass
class SlurmLauncher:
    name: str = "slurm"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    comment: Optional[str] = None
    gpus_per_task: int = 1
    cpus_per_task: int = 4
    mem_gb: Optional[float] = None
    timeout_min: int = 240
    max_num_timeout: int = 20
    signal_delay_s: int = 120
    array_parallelism: int = 64
    setup: List[str] = field(default_factory=list)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    wait: bool = False
    poll_s: float = 30


@dataclass
class Root:
    name: Optional[str] = None
    results_dir: str = "results"
    n: Any = "1..7"            # axes: an int, a range a..b or a list (config.parse_axis)
    seed: Any = 0
    treatments: List[str] = field(default_factory=lambda: list(T.CELLS[:4]))
    directions: List[str] = field(default_factory=lambda: ["B"])
    device: str = "auto"       # auto | cpu | cuda | cuda:N (config.validate)
    dry_run: bool = False
    analyze: bool = True
    save_checkpoints: bool = True
    data: Any = None           # the groups: checked against the schema of the option chosen
    model: Any = None
    split: Any = None
    train: Any = None
    launcher: Any = None


# A group's schema by the ``name`` its option sets.
GROUP_SCHEMAS = {
    "data": {"synthetic": SyntheticData, "cifar10": CifarData, "cifar100": CifarData,
             "imagefolder": FolderData, "imagenet": FolderData},
    "model": {"caffenet": CaffeNetModel},
    "launcher": {"local": LocalLauncher, "submitit_local": SubmititLocalLauncher, "slurm": SlurmLauncher},
}
FIXED_SCHEMAS = {"split": Split, "train": Train}


# ----------------------------------------------------------------------------------- checks

class SchemaError(ValueError):
    """A key the schema does not know, or a value of the wrong type or outside its choices."""


def _shown(allowed) -> str:
    return ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)


def _type_ok(value, tp) -> tuple[bool, str]:
    """Whether ``value`` has type ``tp``, and the words for that type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, "anything"
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        ok, words = _type_ok(value, inner)
        return value is None or ok, f"{words} or null"
    if origin in (list, List):
        ok = isinstance(value, list) and all(_type_ok(v, args[0])[0] for v in value)
        return ok, f"a list of {_type_ok(None, args[0])[1].removeprefix('an ').removeprefix('a ')}s"
    if origin in (dict, Dict):
        return isinstance(value, dict), "a mapping"
    if tp is bool:
        return isinstance(value, bool), "true or false"
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if tp is str:  # Hydra reads data.root=2024 as an int: any scalar is a string here
        return isinstance(value, (str, int, float)) and not isinstance(value, bool), "a string"
    raise TypeError(f"no check for the type {tp!r}")


def known_keys(schema=Root, prefix: str = "") -> list[str]:
    """Every key path of a schema and of every group option's schema."""
    out = []
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        path = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            out += known_keys(hints[f.name], f"{path}.")
        elif schema is Root and f.name in GROUP_SCHEMAS:
            for s in {*GROUP_SCHEMAS[f.name].values()}:
                out += known_keys(s, f"{path}.")
        elif schema is Root and f.name in FIXED_SCHEMAS:
            out += known_keys(FIXED_SCHEMAS[f.name], f"{path}.")
        else:
            out.append(path)
    return sorted(set(out))


def did_you_mean(key: str) -> str:
    """" (did you mean train.epochs?)" for a key close to a known one, else ""."""
    keys = known_keys()
    by_last = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    last = [k.rsplit(".", 1)[-1] for k in keys]
    close = by_last or difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or \
        [k for k, tail in zip(keys, last) if tail in difflib.get_close_matches(key.rsplit(".", 1)[-1], last, n=1)]
    return f" (did you mean {' or '.join(close[:3])}?)" if close else ""


def _check_node(node: dict, schema, prefix: str) -> None:
    hints = typing.get_type_hints(schema)
    by_name = {f.name: f for f in fields(schema)}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if key not in by_name:
            raise SchemaError(f"{path} is not a config key{did_you_mean(path)}")
        tp, allowed = hints[key], by_name[key].metadata.get("choices")
        if is_dataclass(tp):
            if not isinstance(value, dict):
                raise SchemaError(f"{path}={value!r} is not valid; expected a mapping of {', '.join(f.name for f in fields(tp))}")
            _check_node(value, tp, f"{path}.")
            continue
        if allowed is not None:
            if not any(value == a and type(value) is type(a) for a in allowed):
                raise SchemaError(f"{path}={value!r} is not valid; allowed: {_shown(allowed)}")
            continue
        ok, words = _type_ok(value, tp)
        if not ok:
            raise SchemaError(f"{path}={value!r} is not valid; expected {words}")


def check(cfg: DictConfig) -> None:
    """Refuse unknown keys, wrong types and values outside their choices, naming the key."""
    c = OmegaConf.to_container(cfg, resolve=True)
    _check_node(c, Root, "")
    for group, schemas in {**GROUP_SCHEMAS, **{g: None for g in FIXED_SCHEMAS}}.items():
        node = c.get(group)
        if not isinstance(node, dict):
            raise SchemaError(f"{group}={node!r} is not valid; choose an option of the {group} group")
        schema = FIXED_SCHEMAS.get(group) or schemas.get(node.get("name"))
        if schema is None:
            raise SchemaError(f"{group}.name={node.get('name')!r} is not valid; allowed: {', '.join(schemas)}")
        _check_node(node, schema, f"{group}.")

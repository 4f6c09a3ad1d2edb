"""Compose, parse and validate the Hydra config of a sweep.

We use Hydra's compose API rather than ``@hydra.main``: the sweep CLI needs to accept
``n=1..7`` and ``n=1,3,5`` literally (Hydra would read the comma form as a multirun), must
work from any working directory, and should not litter the cwd with ``outputs/``.
Every check here runs before any training starts and names the bad value and what is allowed.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from . import schema
from .schema import ConfigError  # noqa: F401  (the error of every config check)

# Keys whose values are sweep axes: a range "a..b", a comma list "a,b,c" or a single int.
AXIS_KEYS = ("n", "seed", "split.seed")
GROUPS = ("data", "model", "split", "train", "launcher", "experiment")


def config_dir() -> Path:
    """The folder holding config.yaml: inside the installed package, else the repo's configs/."""
    packaged = Path(str(resources.files("transferlab"))) / "configs"
    if (packaged / "config.yaml").is_file():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "configs"
    if (repo / "config.yaml").is_file():
        return repo
    raise FileNotFoundError(f"transferlab's configs were not found in {packaged} or {repo}")


def group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


# Keys whose values are paths: taken as written, so data.root=~/data or a folder with spaces,
# brackets or '=' need no quoting (Hydra's override grammar refuses ~ and others unquoted).
PATH_KEYS = ("data.root", "data.hierarchy", "model.weights", "results_dir")


def _quoted(value: str) -> str:
    """``value`` as one single-quoted string of Hydra's grammar: backslashes are escaped only where
    they precede a quote or the closing quote (Hydra reads the others as written)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def quote_axis_overrides(overrides: Sequence[str]) -> list[str]:
    """Turn ``n=1..7`` / ``n=1,3,5`` into quoted strings Hydra takes as plain values, and path
    values (PATH_KEYS) into quoted strings as written."""
    out = []
    for ov in overrides:
        key, sep, value = ov.partition("=")
        bare = key.lstrip("+~")
        if sep and bare in AXIS_KEYS and value and value[0] not in "'\"[":
            ov = f"{key}='{value}'"
        elif sep and bare in PATH_KEYS and value and value[0] not in "'\"" and value != "null":
            ov = f"{key}={_quoted(value)}"
        out.append(ov)
    return out


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the config from ``configs/`` plus command-line style overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    overrides = quote_axis_overrides(overrides)
    for ov in overrides:
        key, _, value = ov.partition("=")
        # null or empty too: Hydra would crash on a group set to None
        if key in GROUPS and value not in group_options(key):
            raise ConfigError(
                f"unknown {key} {value!r}; choose one of: {', '.join(group_options(key))}"
            )
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except MissingConfigException as e:
        raise ConfigError(str(e)) from None
    except (HydraException, OmegaConfBaseException) as e:
        text = str(e)
        if text.startswith("Could not override '"):  # Hydra's hint (+key=...) would be read by nothing
            key = text.split("'")[1]
            raise ConfigError(schema.not_a_key(key)) from None
        raise ConfigError(f"bad override: {e}") from None
    schema.check(cfg)
    return cfg


def parse_axis(value, name: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """Parse a sweep axis: an int, a list of ints, ``"a..b"`` (inclusive), ``"a,b,c"`` or, where
    the axis has both bounds (n: 1..L-1 of the model), ``"all"``.

    Returns the sorted unique values; raises ConfigError naming the bad value and the
    allowed range.
    """
    allowed = "an integer, a range like 1..7 or a list like 1,3,5"
    if lo is not None and hi is not None:
        allowed += f", each in {lo}..{hi} (or all)"
        if value == "all":
            return list(range(lo, hi + 1))
    elif lo is not None:
        allowed += f", each >= {lo}"
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not valid; expected {allowed}")
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, (list, tuple, ListConfig)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip().strip("[]")
        m = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", text)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise ConfigError(f"{name}={value!r}: the range is empty ({a} > {b}); expected {allowed}")
            items = list(range(a, b + 1))
        elif text and all(re.fullmatch(r"\s*-?\d+\s*", t) for t in text.split(",")):
            items = [int(t) for t in text.split(",")]
        else:
            raise ConfigError(f"{name}={value!r} is not valid; expected {allowed}")
    else:
        raise ConfigError(f"{name}={value!r} is not valid; expected {allowed}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name}={value!r}: {v!r} is not an integer; expected {allowed}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"{name}={value!r}: {v} is out of range; expected {allowed}")
        out.append(v)
    if not out:
        raise ConfigError(f"{name}={value!r} is empty; expected {allowed}")
    return sorted(set(out))


def _choice(cfg: DictConfig, key: str, allowed: Iterable) -> None:
    allowed = list(allowed)
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        shown = [str(a).lower() if isinstance(a, bool) else str(a) for a in allowed]
        raise ConfigError(f"{key}={value!r} is not valid; allowed: {', '.join(shown)}")


def _pretrained_source(cfg: DictConfig) -> None:
    """Pretrained treatments need model.weights; a path there is made absolute (workers and later
    runs may start elsewhere), a torchvision weights name stays a name."""
    from . import treatments as T
    from .models.pretrained import is_weights_name

    wants = [t for t in cfg.treatments if t in T.BY_NAME and T.BY_NAME[t].source == "pretrained"]  # named, not in a group
    weights = cfg.model.get("weights")
    if wants and not weights:
        raise ConfigError(f"treatments {', '.join(wants)} copy units 1..n from a pretrained network, but "
                          f"model.weights is not set: set model.weights=<a state_dict file (.pth/.pt) of "
                          f"{cfg.model.name}> or a torchvision weights name such as IMAGENET1K_V1")
    if weights and not is_weights_name(str(weights)):
        cfg.model.weights = str(Path(os.path.expanduser(str(weights))).absolute())


def validate(cfg: DictConfig) -> None:
    """Check everything that can be checked without touching data or training: the schema, then
    what it cannot say (axes against the model's layers, one key against another, shapes)."""
    from . import treatments as T
    from .models import check_model, num_weight_layers

    schema.check(cfg)  # again: a config may come from elsewhere than compose()
    _pretrained_source(cfg)
    try:
        check_model(cfg.model)  # model.weights too: the file is there, loads and fits the model
    except ValueError as e:
        raise ConfigError(str(e)) from None
    L = num_weight_layers(cfg.model)
    parse_axis(cfg.n, "n", 1, L - 1)
    parse_axis(cfg.seed, "seed", 0)
    parse_axis(cfg.split.seed, "split.seed", 0)
    for t in cfg.treatments:
        if t not in T.WORDS:
            raise ConfigError(f"treatments: {t!r} is not a treatment; allowed: {', '.join(T.WORDS)}")
    if not cfg.treatments:
        raise ConfigError(f"treatments is empty; allowed: {', '.join(T.WORDS)}")
    for d in cfg.directions:
        if d not in ("A", "B"):
            raise ConfigError(f"directions: {d!r} is not a target task; allowed: A, B")
    if not cfg.directions:
        raise ConfigError("directions is empty; allowed: [A], [B] or [A, B]")
    _choice(cfg, "device", ["auto", "cpu", "cuda"] + [f"cuda:{i}" for i in range(16)])
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device!r} but CUDA is not available here; use device=auto or cpu")
    if cfg.train.schedule == "step" and not cfg.train.step_every_epochs:
        raise ConfigError("train.schedule=step needs train.step_every_epochs > 0 (the epochs between "
                          f"steps of x train.step_gamma); it is {cfg.train.step_every_epochs!r}")
    aug = cfg.data.augment
    if "crop" in aug and "auto" not in (aug.crop, aug.resize) and aug.crop > aug.resize:  # auto: data/folder.py
        raise ConfigError(f"data.augment.crop={aug.crop} is larger than data.augment.resize={aug.resize}; "
                          "the random crop is taken from the resized image")
    if cfg.name is not None and (not re.fullmatch(r"[A-Za-z0-9._=+-]+", str(cfg.name)) or str(cfg.name) in (".", "..")):
        raise ConfigError(
            f"name={cfg.name!r} is not a valid sweep folder name; use letters, digits and . _ = + -"
        )


def fit_to_data(cfg: DictConfig, ds) -> None:
    """Write what the dataset worked out from its files (auto image sizes) into cfg.data; the
    model's input size follows the data (model.input_size is ${data.image_size} unless set, or
    null), and the model's shapes are checked at that size."""
    from .models import check_model

    for key, value in ds.resolved.items():
        OmegaConf.update(cfg.data, key, value)
    if cfg.model.input_size in (None, "auto"):
        if ds.image_size is None:
            raise ConfigError(f"model.input_size follows the data but data={ds.name} does not say its image "
                              "size; set model.input_size")
        cfg.model.input_size = int(ds.image_size)
    if ds.image_size is not None and ds.image_size != cfg.model.input_size:
        raise ConfigError(
            f"data={ds.name} gives {ds.image_size}x{ds.image_size} images but model.input_size="
            f"{cfg.model.input_size}; leave model.input_size out (it follows the data) or resize the "
            f"images to it (data.augment.resize/crop, data.image_size)")
    try:
        check_model(cfg.model)
    except ValueError as e:
        raise ConfigError(f"{e} (the image size of data={ds.name})") from None


def sweep_name(cfg: DictConfig) -> str:
    return str(cfg.name) if cfg.name else f"{cfg.data.name}-{cfg.split.name}"


def results_root(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.results_dir))).absolute() / sweep_name(cfg)

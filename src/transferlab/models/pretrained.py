"""Pretrained sources: the network of ``model.weights``, whose units 1..n a pretrained cell
(treatments pretrained, PnB, and pretrained_ft, PnB+) copies instead of a base of the sweep's.

``model.weights`` is
- the path of a state_dict file (.pth/.pt) with torchvision's own key names for the architecture
  (resnet18: conv1.weight, layer1.0.conv1.weight, ..., fc.weight) or ours (layers.<i>.…, as in
  a base's model.pt of another sweep; the only form CaffeNet takes), or
- a torchvision weights name of the architecture (IMAGENET1K_V1, DEFAULT), read from torchvision's
  local cache, ``torch.hub.get_dir()/checkpoints/<the file of the weights' URL>``. Nothing is ever
  downloaded: a file not there is an error saying where to put it and where to fetch it from.

The checkpoint's network is built with its own classifier (so its key names and shapes must fit
exactly), loaded, and cut into units; a cell copies units 1..n of it (models.copy_layers) into a
network whose head is new and sized for the target task, so a 1000-class head never matters.
Files are loaded with ``weights_only=True``: tensors only, nothing unpickled as objects.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from . import torchvision_nets as tv
from .caffenet import CaffeNet
from .units import UnitNet

# The classifier's weight in torchvision's key names: its rows are the checkpoint's classes.
HEADS = {**dict.fromkeys(tv.VGG_CONVS, "classifier.6.weight"), **dict.fromkeys(tv.RESNET_BLOCKS, "fc.weight"),
         **dict.fromkeys(tv.VITS, "heads.head.weight")}
WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")   # torchvision's weights enum members: IMAGENET1K_V1
SHOWN = 4                                       # keys named per kind of mismatch
_seen: dict[tuple, tuple[dict, str]] = {}       # (path, mtime, size) -> (key shapes, sha256)


def is_weights_name(value: str) -> bool:
    """Whether model.weights names torchvision weights rather than a file (a file of that name wins)."""
    return bool(WEIGHTS_NAME.fullmatch(value)) and not Path(value).exists()


def torchvision_weights(arch: str, value: str):
    """torchvision's weights entry ``value`` of the architecture (resnet18_cifar: resnet18's)."""
    try:
        enum = torchvision.models.get_model_weights(arch.removesuffix("_cifar"))
    except (ValueError, KeyError):
        raise ValueError(f"model.weights={value} looks like a torchvision weights name, but torchvision has no "
                         f"weights for model {arch}: give the path of a state_dict file of it") from None
    try:
        return enum[value]
    except KeyError:
        raise ValueError(f"model.weights={value} is not a weights name of torchvision's {enum.__name__}; allowed: "
                         f"{', '.join(enum.__members__)} (or the path of a state_dict file)") from None


def resolve(model_cfg) -> Path:
    """The file model.weights names; a ValueError says why there is none."""
    value = str(model_cfg.weights)
    if not is_weights_name(value):
        path = Path(value).expanduser().absolute()
        if not path.is_file():
            raise ValueError(f"model.weights: {path} does not exist (give a state_dict file, .pth/.pt, or a "
                             "torchvision weights name such as IMAGENET1K_V1)")
        return path
    w = torchvision_weights(model_cfg.name, value)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)
    if not path.is_file():
        raise ValueError(f"model.weights={value} (torchvision's {type(w).__name__}.{w.name}) is not in torchvision's "
                         f"local cache, and nothing is downloaded at run time: fetch {w.url} on a machine with a "
                         f"network and put the file at {path} (or set model.weights=<the path of the file>)")
    return path


def read(path: Path) -> tuple[dict, str]:
    """The state_dict of a weights file and the SHA-256 of the bytes it was read from."""
    data = Path(path).read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on files that are not checkpoints
        first = (str(e).splitlines() or [""])[0].split(". ")[0]  # torch's advice to unpickle objects left out
        raise ValueError(f"model.weights: {path} could not be read as a state_dict ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"model.weights: {path} holds no state_dict (a dict of tensors by parameter name)")
    return state, hashlib.sha256(data).hexdigest()


def _read_once(path: Path) -> tuple[dict, str]:
    """(key -> shape, sha256) of a weights file, read once per version of the file."""
    st = path.stat()
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if stamp not in _seen:
        state, sha = read(path)
        _seen[stamp] = ({k: tuple(v.shape) for k, v in state.items()}, sha)
    return _seen[stamp]


def digest(model_cfg) -> str:
    """The SHA-256 of the file model.weights names (what a sweep folder records of its source)."""
    return _read_once(resolve(model_cfg))[1]


def _ours(shapes: dict) -> bool:
    return all(k.startswith("layers.") for k in shapes)


def _classes(model_cfg, shapes: dict) -> int:
    """The checkpoint's number of classes: the rows of its classifier's weight."""
    if _ours(shapes):
        units = [int(k.split(".")[1]) for k in shapes if k.split(".")[1].isdigit()]
        last = f"layers.{max(units, default=0)}."
        rows = [s[0] for k, s in shapes.items() if k.startswith(last) and k.endswith("weight") and len(s) == 2]
    else:
        head = shapes.get(HEADS.get(model_cfg.name, ""), ())
        rows = [head[0]] if len(head) == 2 else []
    return rows[-1] if rows else 1000


def _skeleton(model_cfg, shapes: dict) -> nn.Module:
    """The network whose state_dict the checkpoint is, on the meta device (shapes, no memory)."""
    classes = _classes(model_cfg, shapes)
    with torch.device("meta"):
        if _ours(shapes):
            return CaffeNet(model_cfg, classes) if model_cfg.name == "caffenet" else tv.build(model_cfg, classes)
        if model_cfg.name not in tv.NAMES:
            raise ValueError(f"model.weights of model {model_cfg.name} must be a state_dict of our {model_cfg.name} "
                             "(keys layers.<i>..., e.g. a base's model.pt of another sweep)")
        return tv.construct(model_cfg, classes)


def _fit(model_cfg, shapes: dict, where) -> nn.Module:
    """The checkpoint's network (meta), or a ValueError naming keys missing, unexpected or of
    other shapes (a few of each)."""
    net = _skeleton(model_cfg, shapes)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in want if k not in shapes and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in shapes if k not in want]
    wrong = [f"{k} has shape {shapes[k]}, the model's is {want[k]}" for k in want if k in shapes and shapes[k] != want[k]]
    problems = [f"{len(keys)} {what}: {', '.join(keys[:SHOWN])}{', ...' if len(keys) > SHOWN else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if keys]
    if problems:
        theirs = "" if _ours(shapes) or model_cfg.name == "caffenet" else f"torchvision's key names (e.g. {next(iter(want))}) or "
        raise ValueError(f"model.weights: {where} is not a state_dict of {model_cfg.name} at input size "
                         f"{model_cfg.input_size} (keys {'; '.join(problems)}); it takes a state_dict of this "
                         f"architecture with {theirs}our unit network's (layers.<i>..., e.g. a base's model.pt)")
    return net


def check(model_cfg) -> None:
    """model.weights names a readable state_dict that fits the architecture (ValueError otherwise);
    the fit is checked once the input size is known (it shapes ViT's position embedding, CaffeNet's fc6)."""
    path = resolve(model_cfg)
    shapes, _ = _read_once(path)
    if model_cfg.input_size not in (None, "auto"):
        _fit(model_cfg, shapes, path)


def network(model_cfg, state: dict) -> UnitNet:
    """The checkpoint's network (its own head) cut into units, to copy units 1..n from."""
    net = _fit(model_cfg, {k: tuple(v.shape) for k, v in state.items()}, "the checkpoint")
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ValueError(f"model.weights: the checkpoint does not load into {model_cfg.name} ({e})") from None
    return net if isinstance(net, UnitNet) else UnitNet(*tv.units(net, model_cfg.name))

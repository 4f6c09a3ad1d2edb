"""Networks and the one API for layer surgery: copy, freeze, re-initialise the first n units.

Every network is an ordered list of transfer units in ``model.layers`` (CaffeNet's 8 weight
layers; a torchvision network's units, torchvision_nets.py): n counts units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import pretrained
from . import torchvision_nets as tv
from .caffenet import NUM_LAYERS, UNIT_NAMES, CaffeNet, init_layer, weight_layer  # noqa: F401
from .units import UnitNet

__all__ = [
    "ARCHITECTURES", "CaffeNet", "UnitNet", "build_model", "check_model", "num_weight_layers", "unit_names",
    "init_layers", "copy_layers", "freeze_layers", "layer_parameters", "NUM_LAYERS",
]


@dataclass(frozen=True)
class Architecture:
    """How to build a network from its config, how many units it has and what they are called,
    and the check of its config (shapes) that runs before anything is written."""

    build: Callable[..., nn.Module]
    num_layers: Callable[..., int]
    unit_names: Callable[..., list]
    check_config: Callable[..., None]


def _caffenet(cfg, num_classes: int, generator: torch.Generator | None = None) -> CaffeNet:
    model = CaffeNet(cfg, num_classes)
    init_layers(model, range(1, NUM_LAYERS + 1), generator)
    return model


TORCHVISION = Architecture(tv.build, tv.num_layers, tv.unit_names, tv.check_config)
# model.name -> its architecture.
ARCHITECTURES = {"caffenet": Architecture(_caffenet, CaffeNet.num_layers, lambda cfg: UNIT_NAMES,
                                          CaffeNet.check_config),
                 **{name: TORCHVISION for name in tv.NAMES}}


def _architecture(model_cfg) -> Architecture:
    try:
        return ARCHITECTURES[model_cfg.name]
    except KeyError:
        raise ValueError(f"model.name={model_cfg.name!r} is not valid; allowed: {', '.join(ARCHITECTURES)}") from None


def num_weight_layers(model_cfg) -> int:
    """L, the number of units that n counts (8 for CaffeNet)."""
    return _architecture(model_cfg).num_layers(model_cfg)


def unit_names(model_cfg) -> list[str]:
    """What unit i is, for i = 1..L (conv1, fc6; stem, layer2.1; embedding, block3, head)."""
    return list(_architecture(model_cfg).unit_names(model_cfg))


def check_model(model_cfg) -> None:
    """ValueError naming the key when ``model_cfg`` does not describe a network that can be built,
    or model.weights no checkpoint that fits it (models/pretrained.py)."""
    _architecture(model_cfg).check_config(model_cfg)
    if model_cfg.get("weights"):
        pretrained.check(model_cfg)


def build_model(model_cfg, num_classes: int, generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised network; ``generator`` makes the init reproducible."""
    return _architecture(model_cfg).build(model_cfg, num_classes, generator)


def init_layers(model: CaffeNet, layers, generator: torch.Generator | None = None) -> None:
    """(Re-)initialise the given 1-based layers with the fresh-network initialiser."""
    for i in layers:
        init_layer(model, i, generator)


def layer_parameters(model: CaffeNet, layers) -> list[nn.Parameter]:
    return [p for i in layers for p in model.layers[i - 1].parameters()]


def copy_layers(dst: nn.Module, src: nn.Module, n: int) -> None:
    """Copy units 1..n from ``src`` into ``dst``: parameters and buffers (BatchNorm's running
    statistics), shapes checked."""
    if not 0 <= n < len(src.layers):
        raise ValueError(f"n={n} is out of range; expected 0..{len(src.layers) - 1}")
    with torch.no_grad():
        for i in range(n):
            theirs = src.layers[i].state_dict()
            for name, t in dst.layers[i].state_dict().items():
                if t.shape != theirs[name].shape:
                    raise ValueError(f"layer {i + 1} {name}: shape {tuple(theirs[name].shape)} of the source "
                                     f"does not fit {tuple(t.shape)}")
                t.copy_(theirs[name])


def freeze_layers(model: nn.Module, n: int) -> None:
    """Freeze units 1..n: no gradient, so the optimiser never sees them, and (UnitNet) their
    BatchNorm layers keep to their running statistics. Dropout still acts in training, as
    Caffe's lr_mult=0 did."""
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.requires_grad_(i >= n)
    model.frozen = n
    model.train(model.training)  # now, not at the next train(): a forward before it must not update them

"""Networks and the one API for layer surgery: copy, freeze, re-initialise the first n layers."""
from __future__ import annotations

import torch
from torch import nn

from .caffenet import NUM_LAYERS, CaffeNet, init_layer, weight_layer  # noqa: F401

__all__ = [
    "ARCHITECTURES", "CaffeNet", "build_model", "check_model", "num_weight_layers", "init_layers",
    "copy_layers", "freeze_layers", "layer_parameters", "NUM_LAYERS",
]

# model.name -> the network class; each says how many transfer units (layers) a config gives it
# and checks the config's shapes before anything is written.
ARCHITECTURES = {"caffenet": CaffeNet}


def _architecture(model_cfg):
    try:
        return ARCHITECTURES[model_cfg.name]
    except KeyError:
        raise ValueError(f"model.name={model_cfg.name!r} is not valid; allowed: {', '.join(ARCHITECTURES)}") from None


def num_weight_layers(model_cfg) -> int:
    """L, the number of layers that n counts (8 for CaffeNet)."""
    return _architecture(model_cfg).num_layers(model_cfg)


def check_model(model_cfg) -> None:
    """ValueError naming the key when ``model_cfg`` does not describe a network that can be built."""
    _architecture(model_cfg).check_config(model_cfg)


def build_model(model_cfg, num_classes: int, generator: torch.Generator | None = None) -> CaffeNet:
    """A freshly initialised network; ``generator`` makes the init reproducible."""
    model = CaffeNet(model_cfg, num_classes)
    init_layers(model, range(1, NUM_LAYERS + 1), generator)
    return model


def init_layers(model: CaffeNet, layers, generator: torch.Generator | None = None) -> None:
    """(Re-)initialise the given 1-based layers with the fresh-network initialiser."""
    for i in layers:
        init_layer(model, i, generator)


def layer_parameters(model: CaffeNet, layers) -> list[nn.Parameter]:
    return [p for i in layers for p in model.layers[i - 1].parameters()]


def copy_layers(dst: CaffeNet, src: CaffeNet, n: int) -> None:
    """Copy the weights of layers 1..n from ``src`` into ``dst`` (shapes must agree)."""
    if not 0 <= n < NUM_LAYERS:
        raise ValueError(f"n={n} is out of range; expected 0..{NUM_LAYERS - 1}")
    with torch.no_grad():
        for i in range(n):
            for (name, p_dst), (_, p_src) in zip(dst.layers[i].named_parameters(),
                                                 src.layers[i].named_parameters()):
                if p_dst.shape != p_src.shape:
                    raise ValueError(f"layer {i + 1} {name}: shape {tuple(p_src.shape)} of the source "
                                     f"does not fit {tuple(p_dst.shape)}")
                p_dst.copy_(p_src)


def freeze_layers(model: CaffeNet, n: int) -> None:
    """Freeze layers 1..n: no gradient, so the optimiser never sees them. The forward pass is
    unchanged (dropout still acts in training, as Caffe's lr_mult=0 did)."""
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.requires_grad_(i >= n)

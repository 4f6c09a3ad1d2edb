"""The AlexNet/CaffeNet-style network of the paper as an ordered list of weight layers.

Layer i (1-based) is the i-th weight layer together with what follows it: ReLU, and for
layers 1 and 2 max-pooling then local response normalisation, for layer 5 max-pooling, for
layers 6 and 7 dropout. Layer 8 is the classifier. Keeping the layers in one ModuleList is
what makes "the first n layers" one slice for copying, freezing and re-initialising.

Where a layer pools, the ReLU comes after the max-pool instead of before it (Caffe's order):
max and ReLU commute, so the outputs and gradients are the same, and the ReLU and its backward
run on a quarter of the values.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import Dropout
from .lrn import LocalResponseNorm
from .units import UnitNet

NUM_LAYERS = 8
UNIT_NAMES = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def _pool(cfg) -> nn.MaxPool2d:
    # Caffe rounds pooled sizes up; ceil_mode reproduces 55 -> 27 -> 13 -> 6 on 227 inputs.
    return nn.MaxPool2d(cfg.pool_kernel, cfg.pool_stride, ceil_mode=True)


def _lrn(cfg) -> LocalResponseNorm:
    # nn.LocalResponseNorm's forward, computed 3-4x faster (see lrn.py).
    return LocalResponseNorm(cfg.lrn.size, alpha=cfg.lrn.alpha, beta=cfg.lrn.beta, k=cfg.lrn.k)


CONV_KEYS = ("conv_channels", "conv_kernels", "conv_strides", "conv_padding", "conv_groups")


def _conv_blocks(cfg) -> list[nn.Module]:
    """Layers 1-5: conv, then max-pool (1, 2, 5), ReLU, and LRN (1, 2)."""
    chans = [cfg.in_channels, *cfg.conv_channels]
    blocks: list[nn.Module] = []
    for i in range(5):
        block = [nn.Conv2d(chans[i], chans[i + 1], cfg.conv_kernels[i], cfg.conv_strides[i],
                           cfg.conv_padding[i], groups=cfg.conv_groups[i])]
        if i in (0, 1, 4):
            block += [_pool(cfg)]
        block += [nn.ReLU(inplace=True)]
        if i in (0, 1):
            block += [_lrn(cfg)]
        blocks.append(nn.Sequential(*block))
    return blocks


class CaffeNet(UnitNet):
    """5 conv + 3 fully connected weight layers; ``layers[i - 1]`` is the paper's layer i."""

    def __init__(self, cfg, num_classes: int):
        layers = _conv_blocks(cfg)
        feature_shape = self._conv_output_shape(nn.Sequential(*layers), cfg)
        flat = math.prod(feature_shape)
        units = [flat, *cfg.fc_units]
        for i in range(2):
            layers.append(nn.Sequential(
                *( [nn.Flatten()] if i == 0 else [] ),
                nn.Linear(units[i], units[i + 1]),
                nn.ReLU(inplace=True),
                Dropout(cfg.dropout),
            ))
        layers.append(nn.Sequential(nn.Linear(units[-1], num_classes)))
        super().__init__(layers, UNIT_NAMES)
        self.cfg, self.feature_shape, self.num_classes = cfg, feature_shape, num_classes

    @staticmethod
    def num_layers(cfg) -> int:
        return NUM_LAYERS

    @staticmethod
    def check_config(cfg) -> None:
        """The list lengths, the groups, and that the input survives the convolutions and pools."""
        for key, length in {**dict.fromkeys(CONV_KEYS, 5), "fc_units": 2}.items():
            if len(cfg[key]) != length:
                raise ValueError(f"model.{key}={list(cfg[key])} is not valid; CaffeNet needs {length} values, "
                                 f"one per {'conv' if length == 5 else 'hidden fully connected'} layer")
        chans = [cfg.in_channels, *cfg.conv_channels]
        for i, g in enumerate(cfg.conv_groups):
            if chans[i] % g or chans[i + 1] % g:
                raise ValueError(f"model.conv_groups={list(cfg.conv_groups)} is not valid: conv{i + 1} has "
                                 f"{chans[i]} input and {chans[i + 1]} output channels, not divisible by {g}")
        if cfg.input_size in (None, "auto"):  # follows the data: checked once the images' size is known
            return
        try:
            with torch.device("meta"):  # shapes only: no memory, no arithmetic, no random draws
                CaffeNet._conv_output_shape(nn.Sequential(*_conv_blocks(cfg)), cfg)
        except RuntimeError as e:
            raise ValueError(f"model.input_size={cfg.input_size} is too small for the convolutions and pools "
                             f"of this model ({str(e).splitlines()[0]})") from None

    @staticmethod
    def _conv_output_shape(convs: nn.Module, cfg) -> tuple[int, ...]:
        with torch.no_grad():
            x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size)
            return tuple(convs(x).shape[1:])


def weight_layer(layer: nn.Sequential) -> nn.Module:
    """The Conv2d or Linear of a layer block."""
    return next(m for m in layer if isinstance(m, (nn.Conv2d, nn.Linear)))


def init_layer(model: CaffeNet, i: int, generator: torch.Generator | None = None) -> None:
    """Initialise layer i (1-based) the way a fresh network is initialised."""
    m = weight_layer(model.layers[i - 1])
    scheme = model.cfg.init
    with torch.no_grad():
        if scheme == "kaiming":
            fan_in = m.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) if i < NUM_LAYERS else math.sqrt(1.0 / fan_in)
            m.weight.normal_(0.0, std, generator=generator)
            m.bias.fill_(0.1 if i < NUM_LAYERS else 0.0)
        elif scheme == "gaussian":
            # The original CaffeNet prototxt: std 0.01 (fc6, fc7: 0.005); biases 1 for
            # conv2, conv4, conv5, fc6 and fc7, 0 elsewhere.
            std = 0.005 if i in (6, 7) else 0.01
            m.weight.normal_(0.0, std, generator=generator)
            m.bias.fill_(1.0 if i in (2, 4, 5, 6, 7) else 0.0)
        else:
            raise ValueError(f"model.init={scheme!r} is not valid; allowed: kaiming, gaussian")

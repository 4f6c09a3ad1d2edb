"""A network as an ordered list of transfer units: ``layers[i - 1]`` is unit i, so "the first n
units" is one slice for copying, freezing and re-initialising, whatever the architecture.

CaffeNet's units are its 8 weight layers; a torchvision network's are the pieces its paper would
transfer (torchvision_nets.py): VGG's weight layers, ResNet's stem, residual blocks and head,
ViT's patch embedding, encoder blocks and head.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class UnitNet(nn.Module):
    """Units run in order; ``forward(x, start, no_grad_prefix)`` as CaffeNet's: enter above unit
    ``start`` (cached features), run the first ``no_grad_prefix`` units without autograd.

    ``frozen`` (set by models.freeze_layers) is how many leading units are frozen: their
    BatchNorm layers stay in eval mode through ``train()``, normalising with the running
    statistics they were copied with and never updating them, as a frozen unit must.
    """

    def __init__(self, units: list[nn.Module], names: list[str]):
        super().__init__()
        if len(units) != len(names):
            raise ValueError(f"{len(units)} units but {len(names)} names")
        self.layers = nn.ModuleList(units)
        self.unit_names = list(names)
        self.frozen = 0

    def forward(self, x: torch.Tensor, start: int = 0, no_grad_prefix: int = 0) -> torch.Tensor:
        for i in range(start, len(self.layers)):
            if i < no_grad_prefix:
                with torch.no_grad():
                    x = self.layers[i](x)
            else:
                x = self.layers[i](x)
        return x

    def forward_prefix(self, x: torch.Tensor, n: int) -> torch.Tensor:
        for i in range(n):
            x = self.layers[i](x)
        return x

    def train(self, mode: bool = True) -> "UnitNet":
        super().train(mode)
        for unit in self.layers[:self.frozen]:
            for m in unit.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

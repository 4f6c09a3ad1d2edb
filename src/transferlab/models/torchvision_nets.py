"""torchvision networks, built by torchvision's own constructors and cut into transfer units.

- VGG (vgg11, vgg16): every weight layer is a unit (a conv with its ReLU and any max-pool that
  follows; a fully connected layer with its ReLU and dropout; the first one also pools and
  flattens), as CaffeNet's are.
- ResNet (resnet18, resnet50, resnet18_cifar): the stem (conv, BN, ReLU, max-pool), each
  residual block, and the head (average pool, classifier). resnet18_cifar has the 3x3 stride-1
  stem and no max-pool that small images need.
- ViT (vit_b_16, vit_tiny): the patch embedding with the class token and position embedding,
  each encoder block, and the head (final LayerNorm, class token, classifier).

The units share torchvision's modules and parameters: a torchvision state_dict loads into the
torchvision model before it is cut. A network is drawn from ``generator`` alone (the
constructors' own initialisers run on a forked global RNG seeded from it).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from .dropout import Dropout
from .units import UnitNet

RESNET_BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet18_cifar": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}
VGG_CONVS = {"vgg11": 8, "vgg16": 13}
VITS = ("vit_b_16", "vit_tiny")
NAMES = (*VGG_CONVS, *RESNET_BLOCKS, *VITS)


class PatchEmbedding(nn.Module):
    """ViT's first unit: patches to tokens, the class token in front, the position embedding added."""

    def __init__(self, vit: torchvision.models.VisionTransformer):
        super().__init__()
        self.conv_proj, self.dropout = vit.conv_proj, vit.encoder.dropout
        self.class_token, self.pos_embedding = vit.class_token, vit.encoder.pos_embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class TokenHead(nn.Module):
    """ViT's last unit: the encoder's final LayerNorm, then the classifier on the class token."""

    def __init__(self, vit: torchvision.models.VisionTransformer):
        super().__init__()
        self.ln, self.heads = vit.encoder.ln, vit.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.ln(x)[:, 0])


def construct(cfg, num_classes: int) -> nn.Module:
    """The torchvision network ``cfg.name`` names, with a new ``num_classes``-way classifier."""
    name = cfg.name
    if name in VGG_CONVS:
        return getattr(torchvision.models, name)(num_classes=num_classes, dropout=float(cfg.dropout))
    if name in RESNET_BLOCKS:
        m = getattr(torchvision.models, name.removesuffix("_cifar"))(num_classes=num_classes)
        if name.endswith("_cifar"):
            m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
            m.maxpool = nn.Identity()
        return m
    return torchvision.models.VisionTransformer(  # null input size: one patch, for the unit names
        image_size=int(cfg.input_size or cfg.patch_size), patch_size=int(cfg.patch_size), num_layers=int(cfg.num_layers),
        num_heads=int(cfg.num_heads), hidden_dim=int(cfg.hidden_dim), mlp_dim=int(cfg.mlp_dim),
        num_classes=num_classes)


def units(m: nn.Module, name: str) -> tuple[list[nn.Module], list[str]]:
    """The transfer units of a torchvision network and their names."""
    if name in VGG_CONVS:
        convs: list[list[nn.Module]] = []
        for mod in m.features:
            if isinstance(mod, nn.Conv2d):
                convs.append([])
            convs[-1].append(mod)
        c = list(m.classifier)  # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        fcs = [[m.avgpool, nn.Flatten(1), *c[0:3]], c[3:6], c[6:7]]
        return ([nn.Sequential(*u) for u in convs + fcs],
                [f"conv{i + 1}" for i in range(len(convs))] + [f"fc{i + 1}" for i in range(3)])
    if name in RESNET_BLOCKS:
        blocks = [(f"layer{i}.{j}", b) for i in range(1, 5) for j, b in enumerate(getattr(m, f"layer{i}"))]
        return ([nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), *(b for _, b in blocks),
                 nn.Sequential(m.avgpool, nn.Flatten(1), m.fc)],
                ["stem", *(n for n, _ in blocks), "fc"])
    layers = list(m.encoder.layers)
    return ([PatchEmbedding(m), *layers, TokenHead(m)],
            ["embedding", *(f"block{i + 1}" for i in range(len(layers))), "head"])


def num_layers(cfg) -> int:
    if cfg.name in VGG_CONVS:
        return VGG_CONVS[cfg.name] + 3
    if cfg.name in RESNET_BLOCKS:
        return sum(RESNET_BLOCKS[cfg.name]) + 2
    return int(cfg.num_layers) + 2


def own_dropout(module: nn.Module) -> None:
    """nn.Dropout draws from the process-wide generator, which networks trained side by side
    would share: each becomes our Dropout (masks from the network's own generator, set by the
    trainer), and p=0 an Identity (nothing random: the feature cache may cache through it)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout):
            setattr(module, name, Dropout(child.p) if child.p > 0 else nn.Identity())
        else:
            own_dropout(child)


def build(cfg, num_classes: int, generator: torch.Generator | None = None) -> UnitNet:
    """A freshly initialised network; the same ``generator`` state gives the same weights."""
    seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        m = construct(cfg, num_classes)
    own_dropout(m)
    return UnitNet(*units(m, cfg.name))


def unit_names(cfg) -> list[str]:
    with torch.device("meta"):  # no memory, no arithmetic
        return build(cfg, 2).unit_names


def check_config(cfg) -> None:
    """The input survives the network (VGG's five pools need 32 pixels; a ViT's patches must
    tile the image), checked on the meta device."""
    if cfg.name in VITS and cfg.hidden_dim % cfg.num_heads:
        raise ValueError(f"model.hidden_dim={cfg.hidden_dim} is not a multiple of model.num_heads={cfg.num_heads}")
    if cfg.input_size in (None, "auto"):  # follows the data: checked once the images' size is known
        return
    size = int(cfg.input_size)
    if cfg.name in VITS and size % int(cfg.patch_size):
        raise ValueError(f"model.input_size={size} is not a multiple of model.patch_size={cfg.patch_size}; "
                         "the patches must tile the image")
    try:
        with torch.device("meta"):
            build(cfg, 2).eval()(torch.zeros(1, 3, size, size))  # eval: BatchNorm takes a batch of one
    except RuntimeError as e:
        raise ValueError(f"model.input_size={size} is too small for {cfg.name} "
                         f"({str(e).splitlines()[0]})") from None

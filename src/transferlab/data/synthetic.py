"""The embedded default dataset: procedural images with a two-level class hierarchy.

How an image is made (all from one seed, on the CPU, in a second or two):
- A class is a *layout* of a few coloured parts. Each part is one of five primitives:
  straight stroke, box outline (the "man-made" kingdom), blob, arc, grating patch (the
  "natural" kingdom), with a position, orientation, size and colour.
- A superclass fixes a prototype layout of ``PARTS`` parts drawn from its kingdom's
  primitives. Each class of that superclass keeps most of the prototype and changes one part
  (primitive, colour or orientation) and adds one part of its own, so sibling classes differ
  in detail while superclasses differ in their whole structure.
- Every image renders its class layout with jitter (position, orientation, size, colour),
  on a random dim background with noise, plus two random distractor parts, so the task is
  learnable but not trivial.
Low-level features (oriented edges, colours, blob and grating textures) are shared by all
classes; the arrangement of parts is class-specific, which gives the layer sweep something
real to measure. The two kingdoms share the colour palette and edges but not primitives,
so ``split=dissimilar`` (man-made vs natural superclasses) is a harder transfer than a
random split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PRIMITIVES = ("stroke", "box", "blob", "arc", "grating")
KINGDOM_PRIMITIVES = {"man-made": (0, 1), "natural": (2, 3, 4)}
PALETTE = torch.tensor([
    [0.95, 0.20, 0.15], [0.15, 0.55, 0.95], [0.95, 0.85, 0.15], [0.20, 0.80, 0.30],
    [0.85, 0.30, 0.85], [0.95, 0.55, 0.10], [0.20, 0.85, 0.85], [0.90, 0.90, 0.90],
])
PARTS = 3  # parts of a superclass prototype; each class adds one more


@dataclass(frozen=True)
class Style:
    """How far an image strays from its class layout (lengths in pixels of a 16x16 image)."""

    shift: float = 0.0          # sd of a shift of the whole layout
    part_jitter: float = 0.9    # sd of each part's own shift
    angle_jitter: float = 0.2   # sd of each part's rotation (radians)
    scale_jitter: float = 0.12  # relative sd of each part's size
    drop: float = 0.25          # probability that a class part is missing (occlusion)
    recolour: float = 0.0       # probability that a class part takes a random palette colour
    distractors: int = 2        # parts of any primitive, anywhere
    noise: float = 0.08         # sd of pixel noise (0..1 scale)


STYLE = Style()


def _kingdom(s: int, num_superclasses: int) -> str:
    return "man-made" if s < (num_superclasses + 1) // 2 else "natural"


def _random_part(g: torch.Generator, prims: tuple[int, ...], size: int) -> list[float]:
    """[primitive, cx, cy, angle, scale, colour] with position on a coarse grid."""
    u = torch.rand(6, generator=g).tolist()
    prim = prims[int(u[0] * len(prims))]
    grid = torch.linspace(0.25, 0.75, 3).tolist()
    cx = grid[int(u[1] * 3)] * size
    cy = grid[int(u[2] * 3)] * size
    angle = int(u[3] * 6) * math.pi / 6
    scale = 0.8 + 0.5 * u[4]
    colour = int(u[5] * len(PALETTE))
    return [prim, cx, cy, angle, scale, colour]


def class_layouts(num_superclasses: int, classes_per_superclass: int, size: int,
                  g: torch.Generator) -> torch.Tensor:
    """Layouts [C, PARTS + 1, 6] for every class (superclass-major order)."""
    layouts = []
    for s in range(num_superclasses):
        prims = KINGDOM_PRIMITIVES[_kingdom(s, num_superclasses)]
        proto = [_random_part(g, prims, size) for _ in range(PARTS)]
        for _ in range(classes_per_superclass):
            parts = [list(p) for p in proto]
            k = int(torch.randint(PARTS, (1,), generator=g))
            change = int(torch.randint(3, (1,), generator=g))
            if change == 0:  # another primitive of the same kingdom
                parts[k][0] = prims[(prims.index(int(parts[k][0])) + 1) % len(prims)]
            elif change == 1:  # another colour
                parts[k][5] = (parts[k][5] + 1 + int(torch.randint(len(PALETTE) - 1, (1,), generator=g))) % len(PALETTE)
            else:  # another orientation
                parts[k][3] += math.pi / 2
            parts.append(_random_part(g, prims, size))
            layouts.append(parts)
    return torch.tensor(layouts, dtype=torch.float32)


def _shape(prim: int, u, v, sc, w) -> torch.Tensor:
    """Intensity 0..1 of one primitive in part coordinates (u along its axis, v across)."""
    if prim == 0:    # stroke
        return torch.exp(-((u.abs() - 3.5 * sc).clamp(min=0) ** 2 + v ** 2) / (2 * w ** 2))
    if prim == 1:    # box outline
        return torch.exp(-(torch.maximum(u.abs() - 2.8 * sc, v.abs() - 1.8 * sc)) ** 2 / (2 * w ** 2))
    if prim == 2:    # blob
        return torch.exp(-0.5 * ((u / (2.2 * sc)) ** 2 + (v / (1.3 * sc)) ** 2))
    r = torch.sqrt(u ** 2 + v ** 2)
    if prim == 3:    # arc: half a ring
        return torch.exp(-(r - 2.8 * sc) ** 2 / (2 * w ** 2)) * torch.sigmoid(3.0 * u / sc)
    # grating patch
    return torch.exp(-r ** 2 / (2 * (2.4 * sc) ** 2)) * (0.5 + 0.5 * torch.cos(2.2 * v / sc))


def render(parts: torch.Tensor, weights: torch.Tensor, size: int) -> torch.Tensor:
    """Render parts [N, P, 6], each scaled by weights [N, P], to colour images [N, 3, S, S].
    Each primitive is computed only for the parts that use it."""
    N, P = parts.shape[:2]
    flat = parts.reshape(N * P, 6)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    intensity = torch.zeros(N * P, size, size)
    w = 0.6 * size / 16.0        # stroke half-width
    for k in range(len(PRIMITIVES)):
        idx = (flat[:, 0] == k).nonzero().squeeze(1)
        if not len(idx):
            continue
        _, cx, cy, ang, scale, _ = flat[idx].unbind(-1)
        dx = coords[None, None, :] - cx[:, None, None]
        dy = coords[None, :, None] - cy[:, None, None]
        c, s = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
        u = dx * c + dy * s      # along the part's axis
        v = -dx * s + dy * c     # across it
        intensity[idx] = _shape(k, u, v, scale[:, None, None] * size / 16.0, w)
    intensity = intensity.view(N, P, size, size) * weights[..., None, None]
    rgb = PALETTE[parts[..., 5].long()]                                   # [N, P, 3]
    return torch.einsum("nphw,npc->nchw", intensity, rgb)


def generate(num_superclasses: int = 8, classes_per_superclass: int = 5, per_class: int = 260,
             image_size: int = 16, seed: int = 0, layout_seed: int | None = None,
             style: Style | None = None):
    """Images uint8 [N, 3, S, S] and labels int64 [N], ``per_class`` images of every class.

    ``layout_seed`` fixes the classes themselves (defaults to ``seed``); ``seed`` also drives
    the per-image jitter, so train and validation sets are drawn with different seeds from
    the same classes.
    """
    st = STYLE if style is None else style
    g = torch.Generator().manual_seed(seed if layout_seed is None else layout_seed)
    layouts = class_layouts(num_superclasses, classes_per_superclass, image_size, g)
    g = torch.Generator().manual_seed(seed * 7919 + 1)
    C, P = layouts.shape[:2]
    y = torch.arange(C).repeat_interleave(per_class)
    N = len(y)
    px = image_size / 16
    parts = layouts[y].clone()                                            # [N, P, 6]
    # Jitter of the class layout: the whole layout, then each part's position, orientation, size.
    parts[..., 1:3] += torch.randn(N, 1, 2, generator=g) * st.shift * px
    parts[..., 1:3] += torch.randn(N, P, 2, generator=g) * st.part_jitter * px
    parts[..., 3] += torch.randn(N, P, generator=g) * st.angle_jitter
    parts[..., 4] *= 1 + st.scale_jitter * torch.randn(N, P, generator=g)
    recolour = torch.rand(N, P, generator=g) < st.recolour
    parts[..., 5] = torch.where(recolour, torch.randint(len(PALETTE), (N, P), generator=g).float(), parts[..., 5])
    # Some parts go missing now and then (occlusion).
    keep = (torch.rand(N, P, generator=g) > st.drop).float()
    # Distractor parts of any primitive, anywhere.
    D = st.distractors
    d = torch.stack([
        torch.randint(len(PRIMITIVES), (N, D), generator=g).float(),
        torch.rand(N, D, generator=g) * image_size,
        torch.rand(N, D, generator=g) * image_size,
        torch.rand(N, D, generator=g) * math.pi,
        0.7 + 0.6 * torch.rand(N, D, generator=g),
        torch.randint(len(PALETTE), (N, D), generator=g).float(),
    ], dim=-1)
    all_parts = torch.cat([parts, d], dim=1)
    weights = torch.cat([keep, torch.full((N, D), 0.8)], dim=1)
    weights = weights * (0.75 + 0.5 * torch.rand(N, P + D, generator=g))
    img = torch.zeros(N, 3, image_size, image_size)
    for start in range(0, N, 4096):  # bounded memory
        sl = slice(start, start + 4096)
        img[sl] = render(all_parts[sl], weights[sl], image_size)
    background = 0.25 * torch.rand(N, 3, 1, 1, generator=g)
    img = background + img + st.noise * torch.randn(img.shape, generator=g)
    img = img.clamp(0, 1)
    return (img * 255).round().to(torch.uint8), y


def hierarchy(num_superclasses: int, classes_per_superclass: int):
    """Names: classes, superclasses, superclass index per class, kingdom per superclass."""
    superclasses, kingdoms = [], []
    for s in range(num_superclasses):
        k = _kingdom(s, num_superclasses)
        superclasses.append(f"{'manmade' if k == 'man-made' else 'natural'}{s}")
        kingdoms.append(k)
    classes = [f"{superclasses[s]}_c{j}" for s in range(num_superclasses)
               for j in range(classes_per_superclass)]
    class_super = [s for s in range(num_superclasses) for _ in range(classes_per_superclass)]
    return classes, superclasses, class_super, kingdoms

"""The embedded dataset: deterministic from its seed, the promised hierarchy and primitives,
and neither unlearnable nor trivial (checked with a pixel-space nearest-centroid classifier,
which is cheap; the README reports what the network reaches)."""
import torch

from transferlab.data import synthetic

S, K = 8, 4  # the default: 8 superclasses of 4 classes


def small(seed: int = 0, layout_seed: int | None = None, per_class: int = 40):
    return synthetic.generate(S, K, per_class=per_class, seed=seed, layout_seed=layout_seed)


def test_same_seed_same_images_other_seed_other_images():
    x1, y1 = small(0)
    x2, y2 = small(0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, y3 = small(1, layout_seed=0)
    assert torch.equal(y1, y3) and not torch.equal(x1, x3)


def test_shapes_labels_and_value_range():
    x, y = synthetic.generate(S, K, per_class=7, image_size=32, seed=3)
    assert x.dtype == torch.uint8 and x.shape == (S * K * 7, 3, 32, 32)
    assert y.dtype == torch.int64 and torch.equal(torch.bincount(y), torch.full((S * K,), 7))
    assert 0 < x.float().mean() < 255 and x.float().std() > 10


def test_hierarchy_has_two_kingdoms_of_superclasses():
    classes, supers, class_super, kingdoms = synthetic.hierarchy(S, K)
    assert len(classes) == S * K and len(set(classes)) == S * K and len(supers) == S
    assert class_super == [s for s in range(S) for _ in range(K)]
    assert kingdoms == ["man-made"] * 4 + ["natural"] * 4


def test_each_kingdom_draws_only_its_own_primitives():
    layouts = synthetic.class_layouts(S, K, 16, torch.Generator().manual_seed(0))
    assert layouts.shape == (S * K, synthetic.PARTS + 1, 6)
    prims = layouts[..., 0].long()
    manmade = set(synthetic.KINGDOM_PRIMITIVES["man-made"])
    natural = set(synthetic.KINGDOM_PRIMITIVES["natural"])
    assert set(prims[: S * K // 2].flatten().tolist()) <= manmade
    assert set(prims[S * K // 2:].flatten().tolist()) <= natural
    # Siblings share most of their superclass's prototype but no two classes are identical.
    assert len({tuple(l.flatten().tolist()) for l in layouts}) == S * K


def test_learnable_but_not_trivial_in_pixel_space():
    xt, yt = small(0, per_class=100)
    xv, yv = small(1, layout_seed=0, per_class=30)
    xt, xv = xt.float().flatten(1) / 255, xv.float().flatten(1) / 255
    centroids = torch.stack([xt[yt == c].mean(0) for c in range(S * K)])
    acc = (torch.cdist(xv, centroids).argmin(1) == yv).float().mean().item()
    assert 0.3 < acc < 0.9, acc  # chance is 1/32

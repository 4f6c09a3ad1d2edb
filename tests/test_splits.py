"""A/B splits of the classes and the per-task views: the random split is the original study's
rule and deterministic in its seed; the dissimilar split follows the class hierarchy; a task's
views hold only its own images, labelled 0..K-1 by rank of the class index."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.config import ConfigError, compose
from transferlab.data import Dataset, Images, ImageSet, load_dataset, make_split, task_view
from transferlab.data.splits import ClassGroups


@pytest.mark.parametrize("C", [2, 3, 10, 11, 40, 100])
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_random_split_is_the_original_rule_disjoint_and_complete(C, seed):
    sp = make_split("random", C, seed)
    want = sorted(int(i) for i in np.random.RandomState([seed]).choice(C, C // 2, replace=False))
    assert list(sp.A) == want
    assert list(sp.B) == sorted(set(range(C)) - set(want))
    assert not set(sp.A) & set(sp.B) and sorted(sp.A + sp.B) == list(range(C))
    assert (len(sp.A), len(sp.B)) == (C // 2, C - C // 2)
    assert sp == make_split("random", C, seed)  # deterministic in the seed
    assert sp.kind == "random" and sp.seed == seed and sp.task("A") == sp.A and sp.task("B") == sp.B


def test_random_split_seeds_give_different_halves():
    halves = {make_split("random", 40, s).A for s in range(6)}
    assert len(halves) == 6
    # The original code wrapped the seed in a list; RandomState(seed) would give other halves.
    assert list(make_split("random", 40, 0).A) != sorted(np.random.RandomState(0).choice(40, 20, replace=False))


def synthetic(num_superclasses: int, per_superclass: int = 3, train: int = 4, val: int = 2) -> Dataset:
    return load_dataset(compose([f"data.num_superclasses={num_superclasses}",
                                 f"data.classes_per_superclass={per_superclass}",
                                 f"data.train_per_class={train}", f"data.val_per_class={val}"]).data)


@pytest.mark.parametrize("supers", [2, 3, 4, 8])
def test_dissimilar_split_follows_the_superclass_groups(supers):
    ds = synthetic(supers)
    groups = ds.class_groups()
    sp = make_split("dissimilar", ds.num_classes, 0, groups)
    assert sp.A and sp.B and sorted(sp.A + sp.B) == list(range(ds.num_classes))
    assert {groups[c] for c in sp.A} == {"man-made"} and {groups[c] for c in sp.B} == {"natural"}
    for s in range(supers):  # every superclass lies wholly in one task
        members = {c for c, sc in enumerate(ds.class_superclass) if sc == s}
        assert members <= set(sp.A) or members <= set(sp.B)
    assert sp == make_split("dissimilar", ds.num_classes, 5, groups)  # no seed involved


def test_dissimilar_split_by_explicit_groups():
    groups = ClassGroups(["natural", "man-made", "man-made", "natural", "natural"], ("man-made", "natural"))
    sp = make_split("dissimilar", 5, 0, groups)
    assert (sp.A, sp.B) == ((1, 2), (0, 3, 4))


@pytest.mark.parametrize("kind, C, groups, match", [
    ("random", 1, None, "at least 2 classes"),
    ("random", 0, None, "at least 2 classes"),
    ("dissimilar", 1, ClassGroups(["man-made"]), "at least 2 classes"),
    ("dissimilar", 4, None, "hierarchy"),
    ("dissimilar", 3, ClassGroups(["man-made"] * 3), "task B empty"),
    ("dissimilar", 2, ClassGroups(["man-made", "plant"]), "plant"),
    ("sideways", 10, None, "'sideways'.*random, dissimilar"),
])
def test_splits_that_cannot_be_made_are_config_errors(kind, C, groups, match):
    with pytest.raises(ConfigError, match=match):
        make_split(kind, C, 0, groups)


def coded_dataset(num_classes: int = 6, per_class: int = 3) -> Dataset:
    """Every image's pixels hold its class index and its number within the set, so a view's
    images can be traced back; classes are interleaved, not sorted."""
    def images(offset: int) -> ImageSet:
        y = torch.arange(num_classes).repeat(per_class)
        x = torch.zeros(len(y), 3, 4, 4, dtype=torch.uint8)
        x[:, 0] = y.view(-1, 1, 1).to(torch.uint8)
        x[:, 1] = (torch.arange(len(y)) + offset).view(-1, 1, 1).to(torch.uint8)
        return ImageSet(x, y)

    return Dataset("coded", [f"c{i}" for i in range(num_classes)],
                   lambda: Images(images(0), images(100), (0.5,) * 3, (0.25,) * 3))


def test_task_view_holds_only_its_classes_with_labels_by_rank():
    ds = coded_dataset()
    task = task_view(ds, "B", [5, 1, 3])  # unsorted on purpose
    assert task.classes == [1, 3, 5] and task.class_names == ["c1", "c3", "c5"] and task.num_classes == 3
    for view, full in ((task.train, ds.train), (task.val, ds.val)):
        original = view.x[:, 0, 0, 0].long()
        assert set(original.tolist()) == {1, 3, 5}
        assert torch.equal(view.y, torch.tensor([task.classes.index(c) for c in original.tolist()]))
        assert view.y.dtype == torch.int64 and view.x.dtype == torch.uint8
        # All of the task's images, in their original order, none of the others.
        keep = (full.y == 1) | (full.y == 3) | (full.y == 5)
        assert torch.equal(view.x, full.x[keep])
    assert len(task.train) == 9 and len(task.val) == 9


def test_views_of_a_split_partition_the_synthetic_dataset():
    ds = synthetic(2, per_superclass=3, train=5, val=2)
    sp = make_split("random", ds.num_classes, 1)
    a, b = (task_view(ds, t, list(sp.task(t))) for t in "AB")
    assert len(a.train) + len(b.train) == len(ds.train) == ds.num_classes * 5
    assert len(a.val) + len(b.val) == len(ds.val) == ds.num_classes * 2
    for task in (a, b):
        K = task.num_classes
        assert torch.equal(torch.bincount(task.train.y, minlength=K), torch.full((K,), 5))
        assert torch.equal(torch.bincount(task.val.y, minlength=K), torch.full((K,), 2))

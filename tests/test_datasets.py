"""Real datasets through the real code paths, on small copies written by the tests in the real
on-disk formats: CIFAR's python pickles, and image folders of PNG/JPEG files. Nothing is
downloaded."""
from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pytest
import torch
from PIL import Image

from transferlab import sweep
from transferlab.config import ConfigError, compose
from transferlab.data import FileSet, channel_stats, load_dataset, make_split, task_view
from transferlab.data.cifar import CIFAR10_CLASSES, classes as cifar_classes, hierarchy as cifar_hierarchy
from transferlab.train import LoaderBatches, make_batches

# ---------------------------------------------------------------- writers of the real formats


def _pickle(path, obj) -> None:
    """Protocol 2 with numpy 1.x module names, as in the published CIFAR files."""
    raw = pickle.dumps(obj, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(raw)


def _images(rng, n) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root, train_per_class=3, test_per_class=2, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    y = rng.permutation(np.repeat(np.arange(10), train_per_class))
    x = _images(rng, len(y))
    for b, idx in enumerate(np.array_split(np.arange(len(y)), 5), 1):
        _pickle(d / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y[idx].tolist(),
                                        "data": x[idx], "filenames": [f"img_{i}.png" for i in idx]})
    yt = np.repeat(np.arange(10), test_per_class)
    xt = _images(rng, len(yt))
    _pickle(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yt.tolist(), "data": xt,
                               "filenames": [f"t_{i}.png" for i in range(len(yt))]})
    _pickle(d / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": len(y) // 5,
                                 "num_vis": 3072})
    return x, y, xt, yt


def write_cifar100(root, train_per_class=2, test_per_class=1, seed=0, bad_coarse=False):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    h = cifar_hierarchy("cifar100")
    out = []
    for name, k in (("train", train_per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), k))
        coarse = np.asarray(h.class_superclass)[fine]
        if bad_coarse and name == "train":
            coarse[0] = (coarse[0] + 1) % 20
        x = _images(rng, len(fine))
        _pickle(d / name, {"filenames": [f"{i}.png" for i in range(len(fine))], "batch_label": name,
                           "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist(), "data": x})
        out += [x, fine]
    _pickle(d / "meta", {"fine_label_names": cifar_classes("cifar100"), "coarse_label_names": h.superclasses})
    return out


def write_imagefolder(root, classes, train_per_class=4, val_per_class=2, size=20, seed=0):
    """root/{train,val}/<class>/...: PNG and JPEG files, some one folder deeper."""
    rng = np.random.default_rng(seed)
    for split, k in (("train", train_per_class), ("val", val_per_class)):
        for ci, c in enumerate(classes):
            for j in range(k):
                sub = root / split / c / ("extra" if j == k - 1 else "")
                sub.mkdir(parents=True, exist_ok=True)
                a = np.clip(rng.normal(40 + 50 * ci, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                ext = "png" if j % 2 == 0 else "jpg"
                Image.fromarray(a).save(sub / f"{c}_{j}.{ext}")
    return root


def data_cfg(*overrides):
    return compose(list(overrides)).data


def load(cfg):
    """load_dataset, afresh: it holds one dataset per process, keyed by its config, and these
    tests change the files behind one config."""
    import transferlab.data

    transferlab.data._CACHE.clear()
    return load_dataset(cfg)


# ---------------------------------------------------------------- CIFAR


def test_cifar10_loads_the_python_files(tmp_path):
    x, y, xt, yt = write_cifar10(tmp_path)
    ds = load(data_cfg("data=cifar10", f"data.root={tmp_path}"))
    assert ds.classes == CIFAR10_CLASSES and ds.image_size == 32
    order = np.concatenate(np.array_split(np.arange(len(y)), 5))  # batches 1..5 in file order
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (30, 3, 32, 32)
    assert torch.equal(ds.train.x, torch.from_numpy(x[order]).view(-1, 3, 32, 32))
    assert ds.train.y.tolist() == y[order].tolist()
    assert torch.equal(ds.val.x.flatten(1), torch.from_numpy(xt)) and ds.val.y.tolist() == yt.tolist()
    assert ds.mean == channel_stats(ds.train.x)[0] and len(ds.std) == 3
    sp = make_split("dissimilar", ds.num_classes, 0, ds.class_groups())
    assert [ds.classes[i] for i in sp.A] == ["airplane", "automobile", "ship", "truck"]


def test_cifar100_fine_and_coarse_labels_and_the_man_made_split(tmp_path):
    x, fine, xt, fine_t = write_cifar100(tmp_path)
    ds = load(data_cfg("data=cifar100", f"data.root={tmp_path}", "data.train_per_class=1"))
    assert len(ds.classes) == 100 and len(ds.superclasses) == 20
    assert ds.superclasses[ds.class_superclass[ds.classes.index("maple_tree")]] == "trees"
    # train_per_class keeps the first image of every class, in file order
    first = [int(np.flatnonzero(fine == c)[0]) for c in range(100)]
    assert torch.equal(ds.train.x.flatten(1), torch.from_numpy(x[sorted(first)]))
    assert len(ds.val) == 100
    sp = make_split("dissimilar", ds.num_classes, 0, ds.class_groups())
    names_a = {ds.classes[i] for i in sp.A}
    assert (len(sp.A), len(sp.B)) == (30, 70)
    assert {"bicycle", "lawn_mower", "bed", "clock", "bottle", "bridge", "skyscraper"} <= names_a
    assert not names_a & {"apple", "sea", "baby", "maple_tree", "whale"}
    task = task_view(ds, "A", list(sp.A))
    assert task.num_classes == 30 and sorted(set(task.train.y.tolist())) == list(range(30))


def test_cifar100_coarse_labels_must_agree_with_the_hierarchy(tmp_path):
    write_cifar100(tmp_path, bad_coarse=True)
    ds = load(data_cfg("data=cifar100", f"data.root={tmp_path}"))
    with pytest.raises(ConfigError, match="coarse label"):
        ds.train


def test_missing_cifar_files_say_where_and_how(tmp_path, capsys):
    ds = load(data_cfg("data=cifar100", f"data.root={tmp_path}/nowhere", "data.download=false"))
    with pytest.raises(ConfigError) as e:
        ds.check()
    msg = str(e.value)
    assert f"{tmp_path}/nowhere/cifar-100-python" in msg and "data.download=true" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in msg
    # The CLI refuses before training and writes no sweep folder.
    rc = sweep.main(["experiment=cifar100", f"data.root={tmp_path}/nowhere", f"results_dir={tmp_path}/r"])
    assert rc == 2 and "data.download=true" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_pickle_that_is_not_cifar_data_is_refused(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(print))
    with pytest.raises(ConfigError, match="not a readable CIFAR file"):
        load(data_cfg("data=cifar10", f"data.root={tmp_path}")).train


def test_cifar100_preset_trains_end_to_end_on_the_files(tmp_path, capsys):
    write_cifar100(tmp_path / "data")
    rc = sweep.main(["experiment=cifar100", f"data.root={tmp_path / 'data'}", "split=dissimilar", "n=1",
                     "treatments=[transfer]", "directions=[B]", "train.epochs=1", "train.batch_size=50",
                     "analyze=false", "device=cpu", f"results_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "cifar100-dissimilar").glob("cells/*/record.json"))]
    assert {r["name"]: r["target_classes"] for r in records} == {"baseA": 30, "baseB": 70, "A1B": 70}
    assert all(r["status"] == "done" for r in records)


def test_cifar100_preset_dry_run_needs_no_files(tmp_path, capsys):
    t0 = time.perf_counter()
    rc = sweep.main(["experiment=cifar100", "split=random", "split.seed=0,1,2,3", "n=1..7", "dry_run=true",
                     f"data.root={tmp_path}/absent", f"results_dir={tmp_path}"])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert rc == 0
    assert "4 split(s) x (2 bases + 56 cells) = 8 base networks + 224 cells = 232 networks" in out
    assert "BnB 56, BnB+ 56, AnB 56, AnB+ 56" in out
    assert "A3B+    random2_s0_A3B+" in out and "needs random2_s0_baseA" in out
    splits = json.loads((tmp_path / "cifar100-random" / "splits.json").read_text())
    assert sorted(splits["splits"]) == ["0", "1", "2", "3"]
    assert all(t["A"]["num_classes"] == 50 for t in splits["splits"].values())
    assert load_dataset(compose(["experiment=cifar100"]).data)._images is None  # no image read
    print(f"dry run of 232 networks: {elapsed:.2f}s")


# ---------------------------------------------------------------- image folders

CLASSES = ["cat", "dog", "car", "ship"]
HIERARCHY = {"superclasses": {"animals": ["cat", "dog"], "vehicles": ["car", "ship"]},
             "groups": {"vehicles-group": ["vehicles"], "animals-group": ["animals"]}}


def folder_cfg(root, *overrides):
    """The files path (DataLoader workers); test_folder_memory.py tests the in-memory one."""
    return data_cfg("data=imagefolder", f"data.root={root}", "data.memory_gb=0", *overrides)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("folder"), CLASSES)


@pytest.mark.parametrize("fmt", ["yaml", "json", "csv"])
def test_imagefolder_with_a_hierarchy_file(image_root, tmp_path, fmt):
    path = tmp_path / f"h.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(HIERARCHY))
    elif fmt == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(HIERARCHY, sort_keys=False))
    else:
        path.write_text("class,superclass,group\ncar,vehicles,vehicles-group\ncat,animals,animals-group\n"
                        "dog,animals,animals-group\nship,vehicles,vehicles-group\n")
    ds = load(folder_cfg(image_root, f"data.hierarchy={path}"))
    assert ds.classes == sorted(CLASSES)  # ImageFolder's order: car, cat, dog, ship
    assert ds.groups == ("vehicles-group", "animals-group")
    sp = make_split("dissimilar", ds.num_classes, 0, ds.class_groups())
    assert [ds.classes[i] for i in sp.A] == ["car", "ship"]  # the first group is task A
    ds.check()
    assert isinstance(ds.train, FileSet) and len(ds.train) == 16 and len(ds.val) == 8
    assert ds.train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert ds.train.path(0).endswith("train/car/car_0.png") and ds.train.path(3).endswith("car/extra/car_3.jpg")


@pytest.mark.parametrize("hierarchy, error", [
    ({"superclasses": {"a": ["cat", "dog", "cow"], "b": ["car", "ship"]}}, r"unknown class\(es\) 'cow'"),
    ({"superclasses": {"a": ["cat", "dog"], "b": ["car"]}}, r"'ship' are in no superclass"),
    ({"superclasses": {"a": ["cat", "dog"], "b": ["car", "ship", "cat"]}}, "'cat' is in two superclasses"),
    ({"superclasses": {"a": ["cat", "dog"], "b": ["car", "ship"]}, "groups": {"x": ["a"]}}, "exactly two"),
    ({"superclasses": {"a": ["cat", "dog"], "b": ["car", "ship"]}, "groups": {"x": ["a"], "y": ["c"]}},
     r"unknown superclass\(es\) 'c'"),
    ({"superclasses": {"a": ["cat", "dog"], "b": ["car", "ship"], "c": []}, "groups": {"x": ["a"], "y": ["b"]}},
     r"superclass\(es\) 'c' are in no group"),
    ({"classes": {}}, "'superclasses' mapping"),
])
def test_bad_hierarchy_files_are_refused(image_root, tmp_path, hierarchy, error):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(hierarchy))
    with pytest.raises(ConfigError, match=error):
        load(folder_cfg(image_root, f"data.hierarchy={path}"))


def test_dissimilar_without_a_hierarchy_is_refused_before_training(image_root, tmp_path, capsys):
    rc = sweep.main(["data=imagefolder", f"data.root={image_root}", "split=dissimilar",
                     "data.augment.resize=18", "data.augment.crop=16", f"results_dir={tmp_path}"])
    assert rc == 2 and "data.hierarchy=<file>" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bad_folders_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        load(folder_cfg(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="needs data.root"):
        load(folder_cfg("null"))
    root = write_imagefolder(tmp_path / "d", ["a", "b"], train_per_class=1, val_per_class=1)
    (root / "val" / "b" / "extra" / "b_0.png").unlink()
    with pytest.raises(ConfigError, match=r"class folder\(s\) 'b' under .*val hold no image"):
        load(folder_cfg(root)).check()
    (root / "val" / "b").rename(root / "val" / "c")
    with pytest.raises(ConfigError, match="hold different classes.*only in train: 'b'.*only in val: 'c'"):
        load(folder_cfg(root))
    rc = sweep.main(["data=imagefolder", f"data.root={tmp_path / 'missing'}", f"results_dir={tmp_path}/r"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def _batches(ds, workers, batch_size=4, crop=16, resize=20):
    ds.train.num_workers = ds.val.num_workers = workers
    task = task_view(ds, "all", list(range(ds.num_classes)))
    aug = compose(["data=imagefolder", f"data.augment.resize={resize}", f"data.augment.crop={crop}"]).data.augment
    return make_batches(task, ds.mean, ds.std, torch.device("cpu"), batch_size, aug)


def test_loader_pipeline_crops_mirrors_and_is_independent_of_the_workers(image_root):
    ds = load(folder_cfg(image_root))
    b0 = _batches(ds, workers=0)
    assert isinstance(b0, LoaderBatches) and b0.steps_per_epoch == 4
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    # Validation: the centre 16x16 of each 20x20 image (resizing to its own size changes nothing).
    x, y = next(iter(b0.eval_batches()))
    path = ds.val.path(0)
    a = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None]
    assert torch.allclose(x[:1], (a[..., 2:18, 2:18].float() / 255 - mean) / std, atol=1e-6)
    assert y.tolist()[:2] == [0, 0]

    # Training: a random crop inside the image, sometimes mirrored; the same for any worker count.
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    e0 = list(b0.epoch(g()))
    e2 = list(_batches(ds, workers=2).epoch(g()))
    assert len(e0) == 4 and all(x.shape == (4, 3, 16, 16) for x, _ in e0)
    for (xa, ya), (xb, yb) in zip(e0, e2):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([y for _, y in e0]).tolist()) == sorted(ds.train.y.tolist())
    assert not torch.equal(torch.cat([x for x, _ in e0]), torch.cat([x for x, _ in b0.epoch(torch.Generator().manual_seed(6))]))


def test_end_to_end_sweep_on_an_image_folder(image_root, tmp_path, capsys):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(HIERARCHY))
    rc = sweep.main([
        "data=imagefolder", f"data.root={image_root}", f"data.hierarchy={path}", "split=dissimilar",
        "data.augment.resize=18", "data.augment.crop=16", "data.num_workers=2", "n=2",
        "treatments=[transfer,random]", "directions=[B]", "train.epochs=1", "train.batch_size=4",
        "analyze=false", "device=cpu", f"results_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    root = tmp_path / "imagefolder-dissimilar"
    splits = json.loads((root / "splits.json").read_text())
    assert splits["splits"]["0"]["A"]["names"] == ["car", "ship"]
    assert splits["splits"]["0"]["B"]["names"] == ["cat", "dog"]
    records = [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*/record.json"))]
    assert sorted(r["name"] for r in records) == ["A2B", "R2B", "baseA", "baseB"]
    assert all(r["status"] == "done" and r["target_classes"] == 2 for r in records)
    assert all([h["epoch"] for h in r["history"]] == [0.5, 1.0] and r["history"][-1]["val_top1"] >= 0
               for r in records)  # train.evals_per_epoch=2

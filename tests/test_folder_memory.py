"""Image folders as a first-class dataset: sizes from the images, decoded once into memory within
a budget and trained through the device path, DataLoader workers capped at the cores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_datasets import load, write_imagefolder

from transferlab import sweep
from transferlab.batches import LoaderBatches, TensorBatches, augment, make_batches
from transferlab.config import ConfigError, compose, fit_to_data
from transferlab.data import FileSet, ImageSet, task_view
from transferlab.data.folder import read_resized
from transferlab.machine import cpu_cores

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """20x20 PNG and JPEG files, 6 training and 3 validation images per class."""
    return write_imagefolder(tmp_path_factory.mktemp("small"), CLASSES, train_per_class=6, val_per_class=3)


def folder(root, *overrides):
    return compose(["data=imagefolder", f"data.root={root}", *overrides])


def test_plain_command_runs_on_a_folder_of_small_images(small, tmp_path, capsys):
    """Nothing but data=imagefolder data.root=...: sizes follow the images, the model follows them."""
    rc = sweep.main(["data=imagefolder", f"data.root={small}", "n=1", "treatments=[transfer]",
                     "train.epochs=1", "train.batch_size=4", "analyze=false", f"results_dir={tmp_path}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "decoding 36 images into memory" in out.out
    root = tmp_path / "imagefolder-random"
    meta = json.loads((root / "sweep.json").read_text())["config"]
    assert meta["data"]["augment"] == {"resize": 20, "crop": 20, "flip": True}
    assert meta["model"]["input_size"] == 20 and "memory_gb" not in meta["data"]  # where images are held: not the recipe
    records = [json.loads(p.read_text()) for p in root.glob("cells/*/record.json")]
    assert sorted(r["name"] for r in records) == ["A1B", "baseA", "baseB"]
    assert all(r["config"]["data"]["image_size"] == 20 and r["config"]["data"]["augment"]["crop"] == 20 for r in records)


@pytest.mark.parametrize("size, resize, crop", [((40, 30), 30, 30), ((300, 400), 256, 227), ((96, 96), 96, 85)])
def test_auto_sizes_come_from_the_images(tmp_path, size, resize, crop):
    for split in ("train", "val"):
        for c in ("x", "y"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", size, (10, 20, 30)).save(tmp_path / split / c / "0.png")
    cfg = folder(tmp_path)
    ds = load(cfg.data)
    assert ds.resolved == {"augment.resize": resize, "augment.crop": crop} and ds.image_size == crop
    fit_to_data(cfg, ds)
    assert (cfg.data.augment.resize, cfg.data.augment.crop, cfg.model.input_size) == (resize, crop, crop)


def test_sizes_given_are_kept_and_a_crop_larger_than_the_resize_is_refused(small):
    ds = load(folder(small, "data.augment.resize=18", "data.augment.crop=16").data)
    assert ds.image_size == 16 and isinstance(ds.train, ImageSet) and ds.train.x.shape[-1] == 18
    with pytest.raises(ConfigError, match="data.augment.crop=24 must be in 1..data.augment.resize=20"):
        load(folder(small, "data.augment.crop=24").data)


def test_a_given_model_size_that_is_not_the_datas_is_refused_naming_both(small):
    cfg = folder(small, "model.input_size=32")
    with pytest.raises(ConfigError, match="gives 20x20 images but model.input_size=32; leave model.input_size out"):
        fit_to_data(cfg, load(cfg.data))


def test_in_memory_pixels_are_the_loader_pipelines(small):
    """Decoded once = what the DataLoader path decodes: train at resize, validation centre-cropped."""
    mem = load(folder(small, "data.augment.resize=18", "data.augment.crop=14").data)
    disk = load(folder(small, "data.augment.resize=18", "data.augment.crop=14", "data.memory_gb=0").data)
    assert isinstance(disk.train, FileSet) and isinstance(mem.train, ImageSet)
    assert torch.equal(mem.train.y, disk.train.y) and torch.equal(mem.val.y, disk.val.y)
    for i in (0, 5, len(disk.train) - 1):
        a = torch.from_numpy(read_resized(disk.train.path(i), 18)).permute(2, 0, 1)
        assert torch.equal(mem.train.x[i], a)
    a = torch.from_numpy(read_resized(disk.val.path(2), 18)).permute(2, 0, 1)
    assert torch.equal(mem.val.x[2], a[:, 2:16, 2:16])
    aug = folder(small, "data.augment.resize=18", "data.augment.crop=14").data.augment
    task = task_view(disk, "all", list(range(4)))
    lb = make_batches(task, disk.mean, disk.std, torch.device("cpu"), 4, aug)
    tb = make_batches(task_view(mem, "all", list(range(4))), mem.mean, mem.std, torch.device("cpu"), 4, aug)
    assert isinstance(lb, LoaderBatches) and isinstance(tb, TensorBatches) and not tb.deterministic
    for (xa, ya), (xb, yb) in zip(lb.eval_batches(batch_size=5), tb.eval_batches(batch_size=5)):
        assert torch.equal(xa.contiguous(), xb) and torch.equal(ya, yb)


def test_the_memory_budget_decides_and_loader_workers_never_exceed_the_cores(small):
    need = 3 * (24 * 20 * 20 + 12 * 20 * 20)  # bytes of the decoded train and validation images
    just_fits = folder(small, f"data.memory_gb={need / 2 ** 30}", "data.num_workers=64").data
    assert isinstance(load(just_fits).train, ImageSet)
    too_small = folder(small, f"data.memory_gb={(need - 1) / 2 ** 30}", "data.num_workers=64").data
    ds = load(too_small)
    assert isinstance(ds.train, FileSet) and ds.train.num_workers == ds.val.num_workers == cpu_cores()


def test_random_crops_of_a_larger_image_are_windows_of_it():
    """augment(size=c): each output is a c x c window of its input (mirrored or not), every offset
    in range drawn, and with no size it draws exactly what it drew before (CIFAR's padded crops)."""
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6).repeat(200, 1, 1, 1)
    out = augment(x, 0, True, torch.Generator().manual_seed(0), size=4)
    assert out.shape == (400, 3, 4, 4)
    seen = set()
    for i in range(len(x)):
        hits = [(oy, ox, m) for oy in range(3) for ox in range(3) for m in (False, True)
                if torch.equal(out[i], (lambda w: w.flip(-1) if m else w)(x[i, :, oy:oy + 4, ox:ox + 4]))]
        assert hits, f"image {i} is not a window of its input"
        seen.update(hits)
    assert {(oy, ox) for oy, ox, _ in seen} == {(oy, ox) for oy in range(3) for ox in range(3)}
    assert {m for *_, m in seen} == {False, True}
    y = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    a = augment(y, 2, True, torch.Generator().manual_seed(3))
    b = augment(y, 2, True, torch.Generator().manual_seed(3), size=8)
    assert torch.equal(a, b)


def test_unreadable_image_is_named(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "x").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / "x" / "0.png")
    (tmp_path / "train" / "x" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"cannot read the image .*1\.png"):
        load(folder(tmp_path).data)

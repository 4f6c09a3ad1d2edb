"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format (the "python version" archives).

    <data.root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <data.root>/cifar-100-python/{train, test, meta}

Both fit in memory: the images are read once into uint8 tensors and trained through the
device-resident batches (random crop with 4 pixels of padding and a mirror, data.augment).
The class names and the hierarchy are fixed tables (``hierarchies/cifar*.yaml``), so a sweep
is planned and its splits.json written (dry_run) without the files. With data.download=true
missing files are fetched through torchvision; the loader checks the files' class names and,
for CIFAR-100, every image's coarse label against the packaged hierarchy.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from . import hierarchy as H
from .sets import ImageSet, first_per_class

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _torchvision_class(name: str):
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def classes(name: str) -> list[str]:
    """The classes in label order; CIFAR-100's fine labels are its class names sorted."""
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    return sorted(c for cs in _hierarchy_table(name)["superclasses"].values() for c in cs)


def _hierarchy_table(name: str) -> dict:
    import yaml

    return yaml.safe_load(H.packaged(f"{name}.yaml").read_text())


def hierarchy(name: str) -> H.Hierarchy:
    return H.from_mapping(_hierarchy_table(name), classes(name), f"{name}.yaml")


def folder(cfg) -> Path:
    return Path(str(cfg.root)).expanduser().absolute() / _torchvision_class(cfg.name).base_folder


def _files(name: str) -> tuple[list[str], list[str], str]:
    tv = _torchvision_class(name)
    return [f for f, _ in tv.train_list], [f for f, _ in tv.test_list], tv.meta["filename"]


def check(cfg) -> None:
    """Make sure the files are there: download them if allowed, else say where to get them."""
    tv = _torchvision_class(cfg.name)
    where = folder(cfg)

    def missing() -> list[str]:
        train, test, meta = _files(cfg.name)
        return [f for f in (*train, *test, meta) if not (where / f).is_file()]

    if not missing():
        return
    if cfg.download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(tv.url, str(where.parent), filename=tv.filename, md5=tv.tgz_md5)
        except Exception as e:  # network, disk or checksum: the user must act
            raise ConfigError(f"data={cfg.name}: downloading {tv.url} into {where.parent} failed: {e}") from None
        if not missing():
            return
    raise ConfigError(
        f"data={cfg.name}: {', '.join(missing())} not found in {where}. Set data.download=true to fetch "
        f"{tv.url} there, or extract that archive under data.root={cfg.root!s} yourself "
        f"(or point data.root=<folder> at the folder that holds {tv.base_folder}/)")


class _Unpickler(pickle.Unpickler):
    """The CIFAR files are pickles of numpy arrays, lists and strings; nothing else is built
    from them (an untrusted pickle could otherwise run code)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")
        if module.startswith("numpy.core"):  # pickles from numpy 1.x
            module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _Unpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable CIFAR file ({e}); delete it and set "
                          f"data.download=true to fetch it again") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _load_split(cfg, files: list[str], label_key: str, hier: H.Hierarchy | None):
    xs, ys = [], []
    for f in files:
        d = _read(folder(cfg) / f)
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d[label_key], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise ConfigError(f"{folder(cfg) / f}: expected N x 3072 images and N labels, "
                              f"got {x.shape} and {y.shape}")
        if hier is not None:  # CIFAR-100: every coarse label must agree with the hierarchy
            coarse = np.asarray(d["coarse_labels"], dtype=np.int64)
            expected = np.asarray(hier.class_superclass)[y]
            if not np.array_equal(coarse, expected):
                i = int(np.flatnonzero(coarse != expected)[0])
                raise ConfigError(f"{folder(cfg) / f}: image {i} of class {int(y[i])} has coarse label "
                                  f"{int(coarse[i])}, the CIFAR-100 hierarchy says {int(expected[i])}")
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32)
    return x, torch.from_numpy(np.concatenate(ys))


def load(cfg):
    """Train and test images as uint8 [N, 3, 32, 32] and int64 labels (the test set is the
    validation set, as in the paper's use of ILSVRC's validation set)."""

    check(cfg)
    train, test, meta = _files(cfg.name)
    names_key = _torchvision_class(cfg.name).meta["key"]
    found = _names(_read(folder(cfg) / meta)[names_key])
    if found != classes(cfg.name):
        raise ConfigError(f"{folder(cfg) / meta}: class names {found[:5]}... are not {cfg.name}'s")
    label_key, hier = ("labels", None) if cfg.name == "cifar10" else ("fine_labels", hierarchy(cfg.name))
    sets = []
    for files, k in ((train, cfg.get("train_per_class")), (test, cfg.get("val_per_class"))):
        x, y = _load_split(cfg, files, label_key, hier)
        if k is not None:
            keep = first_per_class(y, int(k))
            x, y = x[keep], y[keep]
        sets.append(ImageSet(x.contiguous(), y))
    return sets[0], sets[1]

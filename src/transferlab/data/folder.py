"""Image folders: ILSVRC2012 (``data=imagenet``) and any dataset in its layout (``data=imagefolder``).

    <data.root>/<data.train_dir>/<class>/<image>     (train/n01440764/n01440764_10026.JPEG)
    <data.root>/<data.val_dir>/<class>/<image>       (val/n01440764/ILSVRC2012_val_00000293.JPEG)

Classes are the class folders in sorted order, as torchvision's ImageFolder numbers them; the
images of a class are every file with an image extension below its folder, in sorted order.
Every image is resized to data.augment.resize squared (aspect ratio not kept), then a random
data.augment.crop square and a mirror are taken in training, the centre crop for validation
(the original recipe). A set whose decoded pixels fit in data.memory_gb is decoded once into
uint8 tensors (train at resize, validation already centre-cropped) and its crops and mirrors
are drawn on the device (batches.TensorBatches); a larger one stays on disk and is decoded by
DataLoader workers every epoch (batches.LoaderBatches). Both decode with read_resized.

ImageNet: the classes must be exactly the 1000 ILSVRC2012 WordNet ids (packaged list), so that
class index i is the original study's class i: ``split=random split.seed=s`` is its random
split s and ``split=dissimilar`` its man-made (A, 551 classes) / natural (B, 449) split.
imagefolder: the hierarchy, if any, comes from the file data.hierarchy (see hierarchy.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from . import hierarchy as H
from ..machine import cpu_cores
from .sets import FileSet, ImageSet, first_per_class
from ..log import get

log = get(__name__)

# The original study's man-made classes, by index in sorted-wnid order (551); the other 449
# are natural. Its code states no rule behind the list (it is not exactly WordNet's artifact
# subtree), so it is kept as given.
IMAGENET_MAN_MADE = (*range(398, 936), *range(959, 970), 971, 999)


def imagenet_wnids() -> list[str]:
    lines = H.packaged("imagenet_wnids.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def imagenet_hierarchy() -> H.Hierarchy:
    man_made = set(IMAGENET_MAN_MADE)
    return H.Hierarchy(["man-made", "natural"], [0 if i in man_made else 1 for i in range(1000)],
                       ["man-made", "natural"], ("man-made", "natural"))


def _root(cfg) -> Path:
    if cfg.root in (None, "", "???"):
        raise ConfigError(f"data={cfg.name} needs data.root=<folder holding {cfg.train_dir}/ and {cfg.val_dir}/>")
    return Path(str(cfg.root)).expanduser().absolute()


def class_folders(cfg, which: str) -> list[str]:
    """The sorted class folder names under root/<train_dir or val_dir>."""
    root = _root(cfg)
    if not root.is_dir():
        raise ConfigError(f"data={cfg.name}: data.root={cfg.root!s} does not exist ({root})")
    sub = root / str(cfg[f"{which}_dir"])
    if not sub.is_dir():
        raise ConfigError(f"data={cfg.name}: {sub} does not exist; expected the layout "
                          f"{root}/{cfg.train_dir}/<class>/<image> and {root}/{cfg.val_dir}/<class>/<image> "
                          f"(data.{which}_dir names the folder)")
    names = sorted(e.name for e in os.scandir(sub) if e.is_dir() and not e.name.startswith("."))
    if not names:
        hint = (" (ILSVRC2012's validation images come in one folder: sort them into class folders "
                "first, e.g. with the widely used valprep.sh)" if cfg.name == "imagenet" else "")
        raise ConfigError(f"data={cfg.name}: {sub} holds no class folders{hint}")
    return names


def _same_classes(cfg, train: list[str], val: list[str]) -> None:
    if train != val:
        only_t, only_v = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        raise ConfigError(f"data={cfg.name}: {cfg.train_dir}/ and {cfg.val_dir}/ hold different classes "
                          f"(only in {cfg.train_dir}: {H.few(only_t) or '-'}; only in {cfg.val_dir}: "
                          f"{H.few(only_v) or '-'})")


def describe(cfg) -> tuple[list[str], H.Hierarchy | None]:
    """Classes and hierarchy, from the folder names only (no image is opened).

    ImageNet's classes come from the packaged wnid list, checked against the folders when
    data.root exists (so a sweep is planned without the data; training needs it)."""
    resize, crop = cfg.augment.resize, cfg.augment.crop
    if "auto" not in (resize, crop) and not 0 < int(crop) <= int(resize):
        raise ConfigError(f"data.augment.crop={crop} must be in 1..data.augment.resize={resize}")
    if cfg.name == "imagenet":
        wnids = imagenet_wnids()
        if Path(str(cfg.root)).expanduser().is_dir():
            found = class_folders(cfg, "train")
            if found != wnids:
                missing, extra = sorted(set(wnids) - set(found)), sorted(set(found) - set(wnids))
                raise ConfigError(
                    f"data=imagenet: {_root(cfg) / str(cfg.train_dir)} does not hold exactly the 1000 "
                    f"ILSVRC2012 classes (missing: {H.few(missing) or '-'}; not ILSVRC2012: "
                    f"{H.few(extra) or '-'}); for other class sets use data=imagefolder")
            _same_classes(cfg, found, class_folders(cfg, "val"))
        return wnids, imagenet_hierarchy()
    classes = class_folders(cfg, "train")
    _same_classes(cfg, classes, class_folders(cfg, "val"))
    hier = H.load(cfg.hierarchy, classes) if cfg.get("hierarchy") else None
    return classes, hier


def _extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


def images_below(folder: Path, exts: tuple[str, ...]):
    """The image files anywhere below ``folder`` (names only: none is opened), lazily."""
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir():
                    stack.append(e.path)
                elif e.name.lower().endswith(exts):
                    yield e.path


def _has_image(folder: Path, exts: tuple[str, ...]) -> bool:
    """Is there an image anywhere below ``folder``? Stops at the first one."""
    return next(images_below(folder, exts), None) is not None


def check(cfg, classes: list[str]) -> None:
    """Before training: the root and both splits exist, and no class folder is empty."""
    exts = _extensions()
    for which in ("train", "val"):
        found = class_folders(cfg, which)
        if found != classes:
            _same_classes(cfg, classes, found)
        sub = _root(cfg) / str(cfg[f"{which}_dir"])
        empty = [c for c in classes if not _has_image(sub / c, exts)]
        if empty:
            raise ConfigError(f"data={cfg.name}: class folder(s) {H.few(empty)} under {sub} hold no "
                              f"image ({', '.join(exts)})")


def _files(cfg, which: str, classes: list[str], per_class) -> tuple[np.ndarray, torch.Tensor]:
    from torchvision.datasets.folder import make_dataset

    sub = str(_root(cfg) / str(cfg[f"{which}_dir"]))
    try:
        samples = make_dataset(sub, {c: i for i, c in enumerate(classes)}, extensions=_extensions())
    except FileNotFoundError as e:
        raise ConfigError(f"data={cfg.name}: {e}") from None
    cut = len(sub) + 1
    files = np.array([p[cut:].encode() for p, _ in samples])
    y = torch.tensor([c for _, c in samples], dtype=torch.long)
    if per_class is not None:

        keep = first_per_class(y, int(per_class))
        files, y = files[keep.numpy()], y[keep]
    return files, y


def read_resized(path: str, resize: int) -> np.ndarray:
    """One image file as uint8 [resize, resize, 3] RGB (PIL's bilinear resize)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB").resize((resize, resize), Image.BILINEAR))  # writable
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"cannot read the image {path}: {e}") from None


AUTO_MAX = 256     # pixels: auto never resizes to more (the original recipe's 256)
AUTO_CROP_UP_TO = 64  # pixels: auto crops to the whole image up to this size (small images)


def sizes(cfg, classes: list[str], sample: int = 256) -> tuple[int, int]:
    """data.augment.resize and crop, where auto reads the sizes of up to ``sample`` training
    images (their headers only): resize = their median shorter side, at most AUTO_MAX; crop =
    resize for small images, else the original recipe's 227/256 of it."""
    from PIL import Image

    resize, crop = cfg.augment.resize, cfg.augment.crop
    if resize == "auto":
        files, _ = _files(cfg, "train", classes, cfg.get("train_per_class"))
        root = _root(cfg) / str(cfg.train_dir)
        sides = []
        for f in files[np.linspace(0, len(files) - 1, min(sample, len(files))).astype(int)]:
            path = root / f.decode()
            try:
                with Image.open(path) as im:
                    sides.append(min(im.size))
            except OSError as e:
                raise ConfigError(f"data={cfg.name}: cannot read the image {path}: {e}") from None
        resize = min(AUTO_MAX, int(np.median(sides)))
    if crop == "auto":
        crop = resize if resize <= AUTO_CROP_UP_TO else round(resize * 227 / 256)
    if not 0 < int(crop) <= int(resize):
        raise ConfigError(f"data.augment.crop={crop} must be in 1..data.augment.resize={resize}")
    return int(resize), int(crop)


def decode(s: FileSet, resize: int, crop: int | None, threads: int) -> ImageSet:
    """Every image of ``s`` decoded once, as uint8 [N, 3, S, S]: resized, and centre-cropped to
    ``crop`` if given (validation). PIL decodes and resizes without the GIL: threads scale."""
    from concurrent.futures import ThreadPoolExecutor

    side = crop or resize
    x = torch.empty(len(s), 3, side, side, dtype=torch.uint8)
    o = (resize - side) // 2

    def one(i: int) -> None:
        x[i] = torch.from_numpy(read_resized(s.path(i), resize)[o:o + side, o:o + side]).permute(2, 0, 1)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, range(len(s)), chunksize=64))
    return ImageSet(x, s.y)


def load(cfg, classes: list[str], resize: int, crop: int):
    """Train and validation sets: decoded into memory (ImageSets) when their pixels fit in
    data.memory_gb, else FileSets (every image's path, relative to its split folder, and label)."""
    check(cfg, classes)
    out = []
    for which, k in (("train", cfg.get("train_per_class")), ("val", cfg.get("val_per_class"))):
        files, y = _files(cfg, which, classes, k)
        workers = min(int(cfg.num_workers), cpu_cores())
        out.append(FileSet(str(_root(cfg) / str(cfg[f"{which}_dir"])), files, y, workers))
    train, val = out
    need = 3 * (len(train) * resize ** 2 + len(val) * crop ** 2)
    if need > float(cfg.get("memory_gb", 0)) * 2 ** 30:
        return train, val
    threads = max(1, cpu_cores())
    log.info(f"data={cfg.name}: decoding {len(train) + len(val):,} images into memory ({need / 2 ** 20:,.1f} MiB, "
             f"{threads} threads)")
    return decode(train, resize, None, threads), decode(val, resize, crop, threads)

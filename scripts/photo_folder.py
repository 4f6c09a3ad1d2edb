#!/usr/bin/env python
"""A small image folder of real photographs, for trying transferlab as a user with their own data.

    pip download --no-deps -d /tmp/wheels scikit-image scikit-learn   # the photos ship in these wheels
    python scripts/photo_folder.py /tmp/wheels /tmp/photo-folder
    python -m transferlab.sweep data=imagefolder data.root=/tmp/photo-folder

Ten classes, one per photograph (astronaut, cat, palace, coffee, flower, deep field, tissue,
motorcycle, retina, rocket): 32x32 crops of random size and place, mirrored at random, written as
PNG in ImageNet's layout (<out>/train/<class>/*.png, <out>/val/<class>/*.png). Training crops
come from the left 70% of each photograph and validation crops from the rest, so validation
images are regions the network never saw. Nothing is downloaded at run time; the photographs are
read from the two wheel files, which pip fetches from the package registry.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = {  # class -> file inside the wheels
    "astronaut": "skimage/data/astronaut.png", "cat": "skimage/data/chelsea.png",
    "palace": "sklearn/datasets/images/china.jpg", "coffee": "skimage/data/coffee.png",
    "flower": "sklearn/datasets/images/flower.jpg", "deep-field": "skimage/data/hubble_deep_field.jpg",
    "tissue": "skimage/data/ihc.png", "motorcycle": "skimage/data/motorcycle_left.png",
    "retina": "skimage/data/retina.jpg", "rocket": "skimage/data/rocket.jpg",
}


def photos(wheels: Path) -> dict[str, Image.Image]:
    found = {}
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            names = set(z.namelist())
            for cls, member in PHOTOS.items():
                if member in names:
                    found[cls] = Image.open(io.BytesIO(z.read(member))).convert("RGB")
    missing = sorted(set(PHOTOS) - set(found))
    if missing:
        raise SystemExit(f"photographs of {', '.join(missing)} not found in {wheels}/*.whl; "
                         "pip download --no-deps -d <dir> scikit-image scikit-learn")
    return found


def crops(im: Image.Image, k: int, x0: float, x1: float, size: int, rng: np.random.Generator):
    W, H = im.size
    lo, hi = int(x0 * W), int(x1 * W)
    for _ in range(k):
        side = int(rng.integers(size, max(size + 1, min(hi - lo, H, 5 * size))))
        x = int(rng.integers(lo, hi - side + 1))
        y = int(rng.integers(0, H - side + 1))
        c = im.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
        yield c.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheels", type=Path, help="folder with the scikit-image and scikit-learn wheels")
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, default=200, help="training images per class")
    p.add_argument("--val", type=int, default=50, help="validation images per class")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for cls, im in photos(args.wheels).items():
        for split, k, (x0, x1) in (("train", args.train, (0.0, 0.7)), ("val", args.val, (0.7, 1.0))):
            folder = args.out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, c in enumerate(crops(im, k, x0, x1, args.size, rng)):
                c.save(folder / f"{cls}_{i:04d}.png")
    print(f"wrote {args.out}: {len(PHOTOS)} classes, {args.train} training and {args.val} validation images each")


if __name__ == "__main__":
    main()

"""An image folder against the embedded data: the same images, once as PNG files, trained side
by side as a base cell three ways (in memory, decoded once; from disk, decoded every epoch; the
embedded tensors), so the folder's cost is a measured ratio."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data import synthetic

SIZE = 32           # pixels
TRAIN, VAL = 63, 15  # images per class: 32 classes -> 2,016 training and 480 validation PNGs
SIDES = {           # label -> overrides (the data; the network and recipe are the default)
    "embedded tensors": ["data=synthetic", f"data.image_size={SIZE}", f"data.train_per_class={TRAIN}",
                         f"data.val_per_class={VAL}", "data.augment.flip=true"],
    "folder in memory": ["data=imagefolder"],
    "folder from disk": ["data=imagefolder", "data.memory_gb=0"],
}


def write_pngs(root: Path) -> int:
    """The embedded data at SIZE pixels as PNG files in ImageNet's layout; the number written."""
    from PIL import Image

    count = 0
    for split, per, seed in (("train", TRAIN, 0), ("val", VAL, 1)):
        x, y = synthetic.generate(num_superclasses=8, classes_per_superclass=4, image_size=SIZE,
                                  per_class=per, seed=seed, layout_seed=0)
        for i, (img, c) in enumerate(zip(x.permute(0, 2, 3, 1).numpy(), y.tolist())):
            d = root / split / f"class{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img)).save(d / f"{i:05d}.png")
            count += 1
    return count


def compare(device: torch.device, epochs: int, repeat: int) -> dict:
    """Base cell images/s of each side, alternating; the fastest of ``repeat`` counts."""
    from .cells import Bench

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_pngs(root)
        runs: dict = {k: [] for k in SIDES}
        load_s: dict = {}
        for _ in range(repeat):
            for side, overrides in SIDES.items():
                extra = [f"data.root={root}"] if "folder" in side else []
                t0 = time.perf_counter()
                bench = Bench(overrides + extra, device)  # loads (decodes) the images: timed apart from training
                load_s[side] = min(load_s.get(side, float("inf")), time.perf_counter() - t0)
                bench.cfg.train.epochs = epochs
                runs[side].append(bench.run("ours", 0, 0))
    B = int(bench.cfg.train.batch_size)
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
    # Over the whole cell (evaluations and the loader's start-up each epoch count: a user waits for them).
    ips = {k: r["steps"] * B / r["wall"] for k, r in best.items()}
    return {"files": files, "size": SIZE, "epochs": epochs, "steps": best["folder in memory"]["steps"],
            "images_per_s": ips, "load_s": load_s, "walls": {k: [r["wall"] for r in v] for k, v in runs.items()},
            "memory_over_embedded": ips["folder in memory"] / ips["embedded tensors"],
            "memory_over_disk": ips["folder in memory"] / ips["folder from disk"]}


def describe(r: dict) -> str:
    ips = r["images_per_s"]
    return (f"image folder ({r['files']:,} {r['size']}x{r['size']} PNGs), base cell, {r['epochs']} epoch(s) of "
            f"{r['steps'] // r['epochs']} steps, training images per second of the whole cell: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in ips.items())
            + f"; in memory = {r['memory_over_embedded']:.0%} of the embedded tensors' speed and "
              f"{r['memory_over_disk']:.1f}x from disk (loading: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in r["load_s"].items()) + ")")

"""The original study's ImageNet class splits, pinned.

Rules (shared/reference/README.md): over the 1000 ILSVRC2012 classes in sorted-wnid order,
random split s: A = sorted(RandomState([s]).choice(arange(1000), 500, replace=False)), B the
rest; dissimilar: A (man-made) = indices 398-935, 959-969, 971, 999 (551 classes), B the 449
others. The digests below were computed from those rules; a change to the split code, the
packaged wnid list or numpy's legacy generator breaks them.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from transferlab import sweep
from transferlab.data import load_dataset
from transferlab.data.folder import IMAGENET_MAN_MADE, imagenet_wnids
from transferlab.data.splits import make_split

RANDOM_A_SHA256 = {
    0: "fa55a78b192645efd19854c6a3fba82dba631a42f07c5e88a96d59fd4ed21483",
    1: "8a99504d9d952d80a218a48a9e18430b15f660707d32699ebd26a0993b5ae7b5",
    2: "2319fbb6b2e250861f8c1b433297318e5cc62a862a6aff4768787b43a7db621d",
    3: "ffd4093d1e98a0f4165dbc641333e2c244d8fee1f1d8b8701916065689617db8",
}
RANDOM_A_HEAD = {0: [0, 1, 2, 5, 9, 10], 1: [1, 5, 7, 9, 15, 16], 2: [0, 2, 4, 5, 8, 9],
                 3: [0, 5, 6, 7, 8, 10]}
MAN_MADE_SHA256 = "9e9f62d3ed13160890bf2afece0e91fe1e8c7cb19168c621f084c0f4cb1197f6"
WNIDS_SHA256 = "385e0240499426c022b773be1ae4da780f057b89c9694c7f47199f62746b6edd"


def digest(indices) -> str:
    return hashlib.sha256(json.dumps([int(i) for i in indices]).encode()).hexdigest()


@pytest.mark.parametrize("seed", range(4))
def test_random_halves_are_the_original_ones(seed):
    sp = make_split("random", 1000, seed)
    rule = sorted(np.random.RandomState([seed]).choice(np.arange(1000), 500, replace=False))
    assert list(sp.A) == [int(i) for i in rule]
    assert digest(sp.A) == RANDOM_A_SHA256[seed]
    assert list(sp.A[:6]) == RANDOM_A_HEAD[seed]
    assert sorted(sp.A + sp.B) == list(range(1000)) and len(sp.B) == 500
    # The pitfall the original code avoided by wrapping the seed in a list:
    assert sorted(np.random.RandomState(seed).choice(1000, 500, replace=False)) != list(sp.A)


def test_dissimilar_is_the_original_man_made_natural_split():
    ds = load_dataset(_imagenet_cfg(root=None))  # classes from the packaged list: no data needed
    sp = make_split("dissimilar", ds.num_classes, 0, ds.class_groups())
    assert (len(sp.A), len(sp.B)) == (551, 449)
    assert digest(sp.A) == MAN_MADE_SHA256 == digest(IMAGENET_MAN_MADE)
    assert list(sp.A) == [*range(398, 936), *range(959, 970), 971, 999]
    wnids = imagenet_wnids()
    # Spot checks of the class order: tench first, abacus the first man-made class (398),
    # puffer (397) and head cabbage (936) natural, toilet tissue (999) man-made.
    assert (wnids[0], wnids[397], wnids[398], wnids[935], wnids[936], wnids[999]) == (
        "n01440764", "n02655020", "n02666196", "n07711569", "n07714571", "n15075141")
    assert 397 in sp.B and 936 in sp.B and 970 in sp.B and 998 in sp.B


def test_packaged_wnids_are_the_ilsvrc2012_classes_in_sorted_order():
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert hashlib.sha256("\n".join(wnids).encode()).hexdigest() == WNIDS_SHA256


def _imagenet_cfg(root):
    from transferlab.config import compose

    return compose(["data=imagenet", f"data.root={root if root else 'null'}"]).data


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 10)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    """ILSVRC2012's folder layout, 1000 wnid folders with one tiny PNG each, in train and val."""
    root = tmp_path_factory.mktemp("ilsvrc2012")
    png = _png()
    for split in ("train", "val"):
        for w in imagenet_wnids():
            (root / split / w).mkdir(parents=True)
            (root / split / w / f"{w}_1.PNG").write_bytes(png)
    return root


@pytest.mark.parametrize("split", ["random", "dissimilar"])
def test_dry_run_on_a_fake_imagenet_writes_the_original_splits(fake_imagenet, tmp_path, capsys, split):
    seeds = "0,1,2,3" if split == "random" else "0"
    rc = sweep.main(["experiment=yosinski2014", f"data.root={fake_imagenet}", f"split={split}",
                     f"split.seed={seeds}", "n=1..7", "dry_run=true", f"results_dir={tmp_path}"])
    assert rc == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / f"yosinski2014-{split}" / "splits.json").read_text())
    wnids = imagenet_wnids()
    assert data["dataset"] == "imagenet" and data["classes"] == wnids
    if split == "random":
        assert sorted(data["splits"]) == ["0", "1", "2", "3"]
        for s, tasks in data["splits"].items():
            assert digest(tasks["A"]["indices"]) == RANDOM_A_SHA256[int(s)]
            assert tasks["A"]["names"] == [wnids[i] for i in tasks["A"]["indices"]]
            assert sorted(tasks["A"]["indices"] + tasks["B"]["indices"]) == list(range(1000))
        # 4 splits x (2 bases + 2 directions x 5 treatments x 7 layers)
        assert "4 split(s) x (2 bases + 70 cells) = 8 base networks + 280 cells = 288 networks" in out
    else:
        tasks = data["splits"]["0"]
        assert digest(tasks["A"]["indices"]) == MAN_MADE_SHA256
        assert (tasks["A"]["num_classes"], tasks["B"]["num_classes"]) == (551, 449)
        assert data["groups"] == {"A": "man-made", "B": "natural"}
        assert "task A 551 classes, task B 449" in out


def test_fake_imagenet_passes_the_pre_training_check(fake_imagenet):
    cfg = _imagenet_cfg(fake_imagenet)
    cfg.memory_gb = 0  # the files path: their names are what is checked
    ds = load_dataset(cfg)
    ds.check()
    train = ds.train
    assert len(train) == 1000 and train.y.tolist() == list(range(1000))
    assert train.path(398).endswith("n02666196/n02666196_1.PNG")


def test_imagenet_folder_with_other_classes_is_refused(tmp_path):
    from transferlab.config import ConfigError

    for split in ("train", "val"):
        for w in imagenet_wnids()[:999] + ["n99999999"]:
            (tmp_path / split / w).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"exactly the 1000 ILSVRC2012 classes.*n15075141.*n99999999.*imagefolder"):
        load_dataset(_imagenet_cfg(tmp_path))

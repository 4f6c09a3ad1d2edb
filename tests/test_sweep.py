"""End to end through the CLI: a tiny sweep writes one complete record per network, the tidy
table and Figure 2; running it again trains nothing; a changed recipe is refused; a corrupted
record is recomputed; it runs from any working directory; the analysis CLI redraws the figure."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import TINY, without_timing
from omegaconf import OmegaConf

from transferlab import analysis, sweep
from transferlab.cells import plan
from transferlab.config import compose
from transferlab.data import make_split
from transferlab.store import file_sha256, load_state

ARGS = [*TINY, "n=1,2"]  # 2 bases + 2 x (B1B, B1B+, A1B, A1B+) = 10 networks
SWEEP = "synthetic-random"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sweep.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def snapshot(root) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((root / "cells").glob("*/record.json"))}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny sweep: (results_dir, sweep folder, stdout of the run)."""
    results = tmp_path_factory.mktemp("results")
    rc, out, err = run(*ARGS, f"results_dir={results}")
    assert rc == 0, out + err
    return results, results / SWEEP, out


def test_one_complete_record_per_network(done):
    results, root, _ = done
    cfg = compose([*ARGS, f"results_dir={results}"])
    cells = plan(cfg)
    assert len(cells) == 10
    assert sorted(p.name for p in (root / "cells").iterdir()) == sorted(c.key for c in cells)
    full_config = OmegaConf.to_container(cfg, resolve=True)
    for c in cells:
        rec = json.loads((root / "cells" / c.key / "record.json").read_text())
        assert rec["status"] == "done", rec.get("error")
        # Which network: the paper's name, source, target, n, treatment, split, seeds.
        assert (rec["name"], rec["key"], rec["source"], rec["target"], rec["n"], rec["treatment"]) == \
            (c.name, c.key, c.source, c.target, c.n, c.treatment)
        assert (rec["split"], rec["split_seed"], rec["seed"]) == ("random", 0, 0)
        assert rec["seeds"]["train"] == 0 and rec["seeds"]["split"] == 0 and "init" in rec["seeds"]
        assert rec["frozen_layers"] == c.frozen_layers and rec["target_classes"] == 3
        assert rec["source_key"] == (c.base_dependency.key if c.base_dependency else None)
        # How: the full resolved config; where and with what.
        assert rec["config"] == full_config
        assert rec["device"] == "cpu" and rec["device_name"]
        assert len(rec["git_commit"]) == 40 and isinstance(rec["git_dirty"], bool)  # tests run from a checkout
        assert {"transferlab", "torch", "python", "numpy", "hydra"} <= set(rec["versions"])
        assert rec["versions"]["torch"] == torch.__version__
        assert rec["wall_time"] > 0 and rec["started_at"] and rec["finished_at"]
        # What came out: final metrics and the per-epoch history.
        m = rec["metrics"]
        assert 0 <= m["val_top1"] <= 1 and m["val_loss"] > 0 and "val_top5" not in m  # 3 classes
        # train.evals_per_epoch=2: evaluated after half the epoch's steps and at its end.
        assert [h["epoch"] for h in rec["history"]] == [0.5, 1.0]
        assert {"step", "train_loss", "val_loss", "val_top1", "lr", "time"} <= set(rec["history"][0])
        assert rec["history"][-1]["val_top1"] == m["val_top1"]
        # The weights, intact and loadable as tensors only.
        model = root / "cells" / c.key / "model.pt"
        assert file_sha256(model) == rec["model_sha256"]
        assert set(load_state(model)) >= {"layers.0.0.weight", "layers.7.0.weight"}


def test_no_temporary_or_checkpoint_files_remain(done):
    _, root, _ = done
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name == "checkpoint.pt"]


def test_sweep_and_splits_files(done):
    _, root, _ = done
    meta = json.loads((root / "sweep.json").read_text())
    assert meta["name"] == SWEEP and meta["config"]["train"]["epochs"] == 1
    splits = json.loads((root / "splits.json").read_text())
    sp = make_split("random", 6, 0)
    assert splits["num_classes"] == 6
    assert splits["splits"]["0"]["A"]["indices"] == list(sp.A)
    assert splits["splits"]["0"]["B"]["indices"] == list(sp.B)


def test_table_has_one_row_per_network(done):
    _, root, _ = done
    df = pd.read_csv(root / "cells.csv")
    assert len(df) == 10 and df.key.is_unique
    assert set(df.key) == {p.name for p in (root / "cells").iterdir()}
    assert {"name", "treatment", "n", "target", "val_top1", "val_loss", "wall_time"} <= set(df.columns)
    assert df.val_top1.between(0, 1).all()
    assert sorted(df[df.treatment == "base"].name) == ["baseA", "baseB"]


def test_figure2_is_written(done):
    _, root, _ = done
    png, pdf = root / "figures" / "figure2.png", root / "figures" / "figure2.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_progress_is_shown(done):
    *_, out = done
    for i in range(1, 11):
        assert f"[{i}/10] " in out
    assert "epoch 1/1" in out and "val top1" in out
    assert "10 trained, 0 skipped, 0 failed" in out


def test_second_identical_run_trains_nothing(done):
    results, root, _ = done
    before = snapshot(root)
    rc, out, err = run(*ARGS, f"results_dir={results}")
    assert rc == 0, err
    assert out.count("already finished, skipped") == 10, out
    assert "training on task" not in out
    assert "0 trained, 10 skipped, 0 failed" in out
    assert snapshot(root) == before


def test_changed_recipe_in_the_same_folder_is_refused(done):
    results, root, _ = done
    before = snapshot(root)
    rc, out, err = run(*ARGS, "train.epochs=2", f"results_dir={results}")
    assert rc == 2
    assert err.startswith("error: ") and "different recipe" in err and "train.epochs: 1 -> 2" in err
    assert "name=" in err  # says how to keep both
    assert "training" not in out and snapshot(root) == before


def test_a_corrupted_record_is_recomputed_and_the_rest_skipped(done, tmp_path):
    results, _, _ = done
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    root = copy / SWEEP
    victim = root / "cells" / "random0_s0_A2B" / "record.json"
    original = json.loads(victim.read_text())
    victim.write_text(victim.read_text()[:200])  # as if cut off mid-write by a crash
    rc, out, err = run(*ARGS, f"results_dir={copy}", "analyze=false")
    assert rc == 0, err
    assert f"warning: {victim} is corrupted" in err
    assert "A2B (random0_s0_A2B): training on task B" in out
    assert out.count("already finished, skipped") == 9
    redone = json.loads(victim.read_text())
    assert redone["status"] == "done"
    # Same seeds, same data, same base: the recomputed network is the one that was lost.
    assert without_timing(redone["metrics"]) == without_timing(original["metrics"])


def test_literal_cli_forms_plan_the_paper_sweep(tmp_path):
    rc, out, err = run("split=random", "n=1..7", "dry_run=true", f"results_dir={tmp_path}")
    assert rc == 0, err
    assert "= 2 base networks + 28 cells = 30 networks" in out
    for name in ("baseB", "B4B", "B4B+", "A7B", "A1B+"):
        assert f"  {name} " in out
    rc, out, err = run("n=1,3,5", "seed=0,1", "dry_run=true", f"results_dir={tmp_path}")
    assert rc == 0, err
    assert "= 4 base networks + 24 cells = 28 networks" in out
    assert (tmp_path / SWEEP / "splits.json").exists() and not list(tmp_path.rglob("record.json"))


def test_analysis_cli_regenerates_the_figure(done, tmp_path, capsys):
    _, root, _ = done
    copy = tmp_path / SWEEP
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "figures")
    (copy / "cells.csv").unlink()
    assert analysis.main([str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {copy / 'figures' / 'figure2.png'}" in out
    assert (copy / "figures" / "figure2.png").stat().st_size > 10_000
    assert (copy / "figures" / "figure2.pdf").exists()
    assert len(pd.read_csv(copy / "cells.csv")) == 10
    assert analysis.main([str(tmp_path)]) == 2  # not a sweep folder
    assert "error: " in capsys.readouterr().err


def test_module_cli_from_another_working_directory(tmp_path):
    """``python -m transferlab.sweep`` as a user runs it: from any directory, relative paths
    resolved from there, nothing written to the working directory but the results."""
    proc = subprocess.run(
        [sys.executable, "-m", "transferlab.sweep", *TINY, "n=1", "treatments=[transfer]", "results_dir=out",
         "analyze=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "out" / SWEEP
    assert sorted(p.name for p in (root / "cells").iterdir()) == \
        ["random0_s0_A1B", "random0_s0_baseA", "random0_s0_baseB"]
    assert len(pd.read_csv(root / "cells.csv")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no outputs/ or .hydra litter
    assert "3 trained, 0 skipped, 0 failed" in proc.stdout


# --------------------------------------------------------------------------- provenance

def test_records_carry_their_classes_and_the_sha256_of_their_source(done):
    _, root, _ = done
    splits = json.loads((root / "splits.json").read_text())["splits"]["0"]
    recs = {p.parent.name: json.loads(p.read_text()) for p in (root / "cells").glob("*/record.json")}
    base_sha = {t: recs[f"random0_s0_base{t}"]["model_sha256"] for t in "AB"}
    for key, rec in recs.items():
        assert rec["classes"] == splits[rec["target"]]["indices"], key
        assert rec["val_images"] == 6 * len(rec["classes"])
        if rec["treatment"] == "base":
            assert rec["source_sha256"] is None
        else:  # the very bytes its first n layers were copied from
            assert rec["source_sha256"] == base_sha[rec["source"]], key
        assert rec["convergence"]["plateau"] is None and "criterion" in rec["convergence"]  # 1 evaluation


def test_splits_json_accumulates_every_split_seed(tmp_path):
    for ss in (0, 1):
        rc, out, err = run(*TINY, f"split.seed={ss}", "dry_run=true", f"results_dir={tmp_path}")
        assert rc == 0, err
    splits = json.loads((tmp_path / SWEEP / "splits.json").read_text())["splits"]
    assert sorted(splits) == ["0", "1"]
    for ss in (0, 1):
        assert splits[str(ss)]["A"]["indices"] == list(make_split("random", 6, ss).A)


def test_the_resolved_device_and_precision_are_part_of_the_recipe(done, tmp_path):
    results, root, _ = done
    meta = json.loads((root / "sweep.json").read_text())
    assert meta["config"]["resolved"] == {"device": "cpu", "precision": "fp32", "threads": 1}
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    # As if the folder had been trained on a GPU (precision=auto: bf16 there).
    meta["config"]["resolved"] = {"device": "cuda", "precision": "bf16", "threads": None}
    (copy / SWEEP / "sweep.json").write_text(json.dumps(meta))
    before = snapshot(copy / SWEEP)
    rc, out, err = run(*ARGS, f"results_dir={copy}")
    assert rc == 2
    assert "trained on cuda in bf16" in err and "this run would train on cpu in fp32" in err
    assert "name=" in err and snapshot(copy / SWEEP) == before


def test_records_say_whether_the_code_differs_from_its_commit(tmp_path):
    from transferlab.runner import git_state

    assert git_state(str(tmp_path)) == {"git_commit": None, "git_dirty": None}   # not a checkout
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    state = git_state(str(tmp_path))
    assert len(state["git_commit"]) == 40 and state["git_dirty"] is False
    (tmp_path / "notes.txt").write_text("untracked files do not count")
    assert git_state(str(tmp_path))["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(str(tmp_path))["git_dirty"] is True


def test_a_dry_run_never_pins_a_recipe(tmp_path):
    """A dry run checks against a folder's recipe but writes none: the plan of one recipe, then
    another, then a real run of a third are all accepted; after that run the recipe is pinned."""
    assert run(*TINY, "train.epochs=3", "dry_run=true", f"results_dir={tmp_path}")[0] == 0
    assert not (tmp_path / SWEEP / "sweep.json").exists()
    assert run(*TINY, "dry_run=true", f"results_dir={tmp_path}")[0] == 0
    assert run(*TINY, "n=1", "treatments=[transfer]", "train.epochs=2", "analyze=false", f"results_dir={tmp_path}")[0] == 0
    rc, out, err = run(*TINY, "n=1", "dry_run=true", f"results_dir={tmp_path}")  # epochs 1: not this folder's
    assert rc == 2 and "train.epochs: 2 -> 1" in err

"""Reduced precision on the trainer's CPU path: fp16 trains with a gradient scaler (its state
saved and restored with every checkpoint), bf16 and fp32 without one."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, without_timing

from transferlab.batches import make_batches
from transferlab.config import compose
from transferlab.models import build_model
from transferlab.runner import SweepContext
from transferlab.store import SweepStore
from transferlab.train import train


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_a_resumed_run_ends_as_a_straight_one_with_the_scaler_state(tmp_path, precision):
    cfg = compose(TINY + ["train.epochs=3", "data.train_per_class=16", f"train.precision={precision}"])
    ctx = SweepContext(cfg, SweepStore(tmp_path))
    task = ctx.task("B", 0)

    def fresh():
        return build_model(cfg.model, task.num_classes, generator=torch.Generator().manual_seed(1))

    def batches():
        return make_batches(task, ctx.dataset.mean, ctx.dataset.std, torch.device("cpu"), 16)

    straight = fresh()
    ref = train(straight, batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None)
    assert ref["precision"] == precision and all(math.isfinite(h["train_loss"]) for h in ref["history"])
    if precision == "fp16":  # the scaler ran: 2**16 at the start, halved at every overflow, never grown in 3 epochs
        assert ref["grad_scale"] is not None and 0 < ref["grad_scale"] <= 65536.0
    else:
        assert ref["grad_scale"] is None

    class Stop(Exception):
        pass

    def save_then_stop(state):
        torch.save(state, tmp_path / "ckpt.pt")
        raise Stop

    with pytest.raises(Stop):
        train(fresh(), batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None, on_epoch_end=save_then_stop)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ("scale" in state["scaler"]) == (precision == "fp16")
    resumed = fresh()
    out = train(resumed, batches(), cfg.train, frozen_layers=0, seed=5, log=lambda m: None, state=state)
    assert without_timing(out["history"]) == without_timing(ref["history"])
    assert out["grad_scale"] == ref["grad_scale"]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k



def test_fp16_on_a_cpu_steps_with_the_foreach_kernel_not_the_fused_one():
    from transferlab.train import make_optimizer

    p = [torch.nn.Parameter(torch.ones(3))]
    for precision, fused in (("fp16", False), ("fp32", True), ("bf16", True)):
        tcfg = compose(TINY + [f"train.precision={precision}"]).train
        opt = make_optimizer([{"params": p, "lr_mult": 1.0}], tcfg, torch.device("cpu"))
        assert bool(opt.defaults["fused"]) is fused, precision


def test_the_cuda_defaults_code_path_runs_on_a_cpu_close_to_fp32(tmp_path):
    """bf16 autocast, channels_last and torch.compile (what a GPU gets by default) for a small sweep
    on a CPU: every network finishes with finite numbers, its first evaluation within 5% of fp32's
    training loss and its final validation loss within 15% (the runs then drift apart, as any two
    arithmetics do), frozen cells through the feature cache under bf16's tolerance."""
    import contextlib
    import io
    import json

    from transferlab import sweep

    common = ["n=1,5", "treatments=[transfer,transfer_ft]", "data.num_superclasses=2", "data.classes_per_superclass=3",
              "data.train_per_class=40", "data.val_per_class=20", "train.epochs=3", "train.batch_size=16",
              "train.lr=0.005", "device=cpu", "analyze=false"]
    runs = {"bf16": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
            "fp32": ["train.precision=fp32"]}
    for name, extra in runs.items():
        with contextlib.redirect_stdout(io.StringIO()):
            assert sweep.main([*common, *extra, f"results_dir={tmp_path / name}"]) == 0
    for path in sorted((tmp_path / "bf16" / "synthetic-random" / "cells").glob("*/record.json")):
        a = json.loads(path.read_text())
        b = json.loads((tmp_path / "fp32" / path.relative_to(tmp_path / "bf16")).read_text())
        assert a["precision"] == "bf16" and a["fast_path"] == {"channels_last": True, "cudnn_benchmark": False,
                                                                "compile": True}
        assert all(math.isfinite(h[k]) for h in a["history"] for k in ("train_loss", "val_loss", "val_top1"))
        assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=0.05), a["name"]
        assert a["metrics"]["val_loss"] == pytest.approx(b["metrics"]["val_loss"], rel=0.15), a["name"]
        if a["name"] == "A5B":
            assert a["feature_cache_layers"] == 5 and a["feature_cache_check"]["tolerance"] == 0.0  # a CPU: exact

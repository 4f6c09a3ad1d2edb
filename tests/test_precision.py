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

"""CKA of a sweep folder's networks, unit by unit (``python -m transferlab.analysis <sweep> --cka``,
and a sweep with probe cells): minibatch CKA (similarity.py) between baseA and baseB on a fixed
sample of the target task's validation images, and between every fine-tuned cell whose weights
were saved and the network it started from (how far fine-tuning moved each unit). Activations
are pooled as the probes' are (probe.pool with probe.max_features), the networks in eval mode.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .batches import make_batches
from .estimates import source_network, unit_outputs
from .models import build_model, unit_names


CKA_COLUMNS = ["sweep", "split", "split_seed", "seed", "target", "pair", "kind", "cell", "cell_n", "unit",
               "unit_name", "kernel", "cka", "images", "sample", "seconds", "sha_x", "sha_y"]


def _sample(task, images: int, seed: int = 0):
    """The task with a fixed sample of up to ``images`` of its validation images (a seeded draw)."""
    from dataclasses import replace

    n = len(task.val)
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(images, n)].sort().values
    return replace(task, val=task.val.subset(keep, task.val.y[keep]))


def cka_by_unit(ctx, nx, ny, task, kernels=("linear",), images: int = 500, batch_size: int = 250) -> list[dict]:
    """Minibatch CKA of networks ``nx`` and ``ny`` at units 1..L-1 on a fixed sample of the task's
    validation images, activations pooled as the probes' are (probe.max_features): a row per unit
    and kernel (unit, unit_name, kernel, cka, images, seconds)."""
    from .similarity import MinibatchCKA

    started = time.perf_counter()
    units, max_features = len(nx.layers) - 1, int(ctx.cfg.probe.max_features)
    batches = make_batches(_sample(task, images), ctx.dataset.mean, ctx.dataset.std, ctx.device, batch_size,
                           ctx.cfg.data.get("augment"))
    acc = {(u, k): MinibatchCKA(k) for u in range(units) for k in kernels}
    for x, _ in batches.plain_batches("val", batch_size):
        if len(x) < 4:  # the unbiased estimator needs 4 examples: a last batch of fewer is left out
            continue
        hx, hy = unit_outputs(nx, x, units, max_features)[0], unit_outputs(ny, x, units, max_features)[0]
        for (u, k), a in acc.items():
            a.update(hx[u], hy[u])
    seconds = time.perf_counter() - started
    names = unit_names(ctx.cfg.model)
    return [{"unit": u + 1, "unit_name": names[u], "kernel": k, "cka": a.value(), "images": a.examples,
             "seconds": seconds} for (u, k), a in acc.items()]


def _saved(ctx, rec: dict) -> torch.nn.Module:
    """A finished network of the sweep from its saved weights, which must be those its record lists."""
    from .store import file_sha256, load_state

    path = ctx.store.model_path(rec["key"])
    if file_sha256(path) != rec.get("model_sha256"):
        raise RuntimeError(f"the weights of {rec['name']} ({path}) are not the ones its record lists")
    net = build_model(ctx.cfg.model, int(rec["target_classes"]))
    net.load_state_dict(load_state(path))
    return net.to(ctx.device).eval()


def sweep_cka(root, kernels=("linear",), images: int = 500, batch_size: int = 250, device: str | None = None,
              log=print):
    """CKA of a sweep folder's networks unit by unit, a DataFrame of CKA_COLUMNS: baseA against
    baseB of every replicate on the validation images of every trained direction's target (kind
    "bases"), and every fine-tuned cell whose weights were saved against the network it started
    from (kind "finetuned"). Rows of ``root/cka.csv`` for the same weights (SHA-256), kernels and
    sample size are reused, not recomputed."""
    import pandas as pd
    from omegaconf import OmegaConf

    from .cells import Cell
    from .runner import SweepContext, load_source
    from .store import SweepStore

    root, store = Path(root), SweepStore(Path(root))
    records = [r for r in store.records() if r.get("status") == "done"]
    old = pd.read_csv(root / "cka.csv") if (root / "cka.csv").exists() else pd.DataFrame(columns=CKA_COLUMNS)
    rows, contexts, unsaved = [], {}, []

    def context(rec) -> SweepContext:
        cfg = OmegaConf.create(rec["config"])
        if device is not None:
            cfg.device = device
        key = OmegaConf.to_yaml(cfg)
        if key not in contexts:
            contexts[key] = SweepContext(cfg, store)
        return contexts[key]

    def measure(ident: dict, rec: dict, sha_x: str, sha_y: str, nets) -> None:
        """Rows of one pair (``nets()`` builds it), or those of cka.csv for the same weights."""
        same = old[(old.sha_x == sha_x) & (old.sha_y == sha_y) & (old.target == ident["target"])
                   & (old["sample"] == images)] if len(old) else old
        if set(same.kernel) >= set(kernels):  # every kernel measured before is kept, not only those asked for
            rows.extend({**r, **ident} for r in same.to_dict("records"))
            return
        ctx = context(rec)
        task = ctx.task(ident["target"], int(rec["split_seed"]))
        for r in cka_by_unit(ctx, *nets(ctx), task, kernels, images, batch_size):
            rows.append({**ident, **r, "sample": images, "sha_x": sha_x, "sha_y": sha_y})

    bases = {(r["split"], r["split_seed"], r["seed"], r["target"]): r for r in records if r["treatment"] == "base"}
    targets = sorted({r["target"] for r in records if r["treatment"] != "base"}) or ["B"]
    for (split, ss, seed, t), rt in sorted(bases.items()):
        ro = bases.get((split, ss, seed, "A" if t == "B" else "B"))
        if t not in targets or ro is None:
            continue
        ra, rb = (ro, rt) if t == "B" else (rt, ro)
        ident = {"sweep": root.name, "split": split, "split_seed": ss, "seed": seed, "target": t,
                 "pair": "baseA vs baseB", "kind": "bases", "cell": None, "cell_n": None}
        log(f"CKA baseA vs baseB ({split} split {ss}, seed {seed}) on task {t}'s validation images")
        measure(ident, rt, ra["model_sha256"], rb["model_sha256"], lambda ctx: (_saved(ctx, ra), _saved(ctx, rb)))
    for r in records:
        if not (r.get("finetune") and r.get("source") in ("A", "B", "pretrained")):
            continue
        if not r.get("model_sha256"):
            unsaved.append(r["name"])
            continue
        cell = Cell(r["treatment"], r["target"], int(r["n"]), r["split"], int(r["split_seed"]), int(r["seed"]))
        ident = {"sweep": root.name, "split": r["split"], "split_seed": r["split_seed"], "seed": r["seed"],
                 "target": r["target"], "pair": f"{r['name']} vs {cell.source_name}", "kind": "finetuned",
                 "cell": r["label"], "cell_n": int(r["n"])}

        def nets(ctx, r=r, cell=cell):
            return source_network(ctx, cell, load_source(ctx, cell)[0]), _saved(ctx, r)

        measure(ident, r, r["source_sha256"], r["model_sha256"], nets)
    if unsaved:
        log(f"CKA: {len(unsaved)} fine-tuned cell(s) have no saved weights ({', '.join(unsaved[:4])}"
            f"{', ...' if len(unsaved) > 4 else ''}); a sweep with save_checkpoints=true saves them")
    out = pd.DataFrame(rows, columns=CKA_COLUMNS)
    return out.sort_values(["split", "split_seed", "seed", "target", "kind", "cell_n", "cell", "unit", "kernel"],
                           na_position="first").reset_index(drop=True)

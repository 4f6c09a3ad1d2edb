"""The sweep CLI: overrides -> config -> plan -> train every cell -> table and figures.

    python -m transferlab.sweep                          # the default sweep
    python -m transferlab.sweep split=random n=1..7 seed=0,1 train.epochs=4
    python -m transferlab.sweep --cfg                    # print the composed config
    python -m transferlab.sweep dry_run=true             # print the plan only
    python -m transferlab.sweep launcher=submitit_local launcher.workers=4   # 4 worker processes
    python -m transferlab.sweep launcher=slurm launcher.partition=gpu        # Slurm job arrays

Rerunning the same command skips the cells that are already finished, resumes interrupted ones
from their last epoch and retries failed ones; exit status 1 if any cell failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

# Run as a program: Ctrl-C while Python loads torch (its first seconds) exits 130, not a traceback.
_LOADING = __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _LOADING:
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

from omegaconf import OmegaConf

from . import log as logs
from . import tracking
from .cells import Cell, plan
from .config import ConfigError, compose, fit_to_data, results_root, sweep_name, validate
from .executors import LaunchError, StillRunning, make_executor, new_run_id, summarize
from .models import pretrained, unit_names
from .store import SweepStore, atomic_write_json, check_writable
from .train import resolved_arithmetic

if _LOADING:  # loaded: from here Ctrl-C is the sweep's to handle (main, executors/local.py)
    signal.signal(signal.SIGINT, signal.default_int_handler)
log = logs.get(__name__)

# Config keys that do not change what a cell computes: they may differ between runs of one sweep.
NON_DEFINING = ("name", "results_dir", "n", "seed", "treatments", "directions", "device",
                "dry_run", "analyze", "save_checkpoints", "launcher", "quiet", "verbose", "logger")


# What a sweep with probe cells measures CKA with (python -m transferlab.analysis --cka's defaults).
_CKA_DEFAULTS = argparse.Namespace(cka_kernels="linear", cka_images=500, device=None)


def _arithmetic_text(r: dict) -> str:
    threads = f", {r['threads']} thread(s) per network" if r.get("threads") else ""
    return f"on {r.get('device')} in {r.get('precision')}{threads}"


def _probe_defaults() -> dict:
    from dataclasses import asdict

    from .schema.groups import Probe

    return asdict(Probe())


def defining_config(cfg) -> dict:
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_DEFINING:
        c.pop(k, None)
    c["split"].pop("seed", None)
    for k in ("compile",):
        c["train"].pop(k, None)
    for k in ("transfer_lr_mult", "layer_decay"):  # at 1 they change nothing: older folders still match
        if c["train"].get(k) == 1.0:
            c["train"].pop(k)
    for k in ("root", "download", "num_workers", "memory_gb"):  # where the files are and how they are read
        c["data"].pop(k, None)
    if c.get("probe") == _probe_defaults():  # probes as ever: folders from before probes still match
        c.pop("probe")
    if c["data"].get("name") != "synthetic":  # the crop's (or CIFAR's 32): older folders lack the key
        c["data"].pop("image_size", None)
    return c


def _diff(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def _keep_weights(old: dict, new: dict) -> tuple[dict, dict]:
    """model.weights and its file's SHA-256 are part of the recipe, but a run without them trains
    no pretrained cell: it keeps the folder's, and a folder without them takes this run's. A
    different file (by path or bytes) is a different recipe."""
    def weights(c: dict):
        return (c.get("model") or {}).get("weights")

    def taking(c: dict, other: dict) -> dict:
        return {**c, "model": {**(c.get("model") or {}), "weights": weights(other)},
                "weights_sha256": other.get("weights_sha256")}

    if weights(new) is None and weights(old) is not None:
        return old, taking(new, old)
    if weights(old) is None and weights(new) is not None:
        return taking(old, new), new
    return old, new


def prepare(cfg, device, store: SweepStore, pin: bool = True) -> None:
    """Set up the sweep folder of a validated config (sweep.json, refusing another recipe); no
    training yet. ``pin=False`` (a dry run) only checks against the recipe already there: a folder
    where nothing was trained must not hold a recipe that refuses the real run."""
    root = store.root
    check_writable(root)
    meta_path = root / "sweep.json"
    defining = {**defining_config(cfg), "resolved": resolved_arithmetic(cfg, device)}
    if cfg.model.get("weights"):  # the pretrained source's file, by its bytes
        defining["weights_sha256"] = pretrained.digest(cfg.model)
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())["config"]
        except (ValueError, KeyError):
            old = None
        if old is not None:
            old, defining = _keep_weights(old, defining)
        if old is not None and old.get("resolved") != defining["resolved"]:
            raise ConfigError(
                f"{root} holds networks trained {_arithmetic_text(old.get('resolved') or {})}; this run would "
                f"train {_arithmetic_text(defining['resolved'])}. Their arithmetic differs, so their records must "
                f"not be mixed: run where the folder was trained (device=..., train.precision=..., train.threads=...), "
                f"or choose another name=...")
        changes = "; ".join(_diff(old, defining)[:8]) if old is not None else ""  # absent there, null here: none
        if changes:
            raise ConfigError(
                f"{root} holds a sweep with a different recipe ({changes}). Records of different "
                f"recipes must not be mixed: choose another name=... or remove that folder")
    if pin:
        atomic_write_json(meta_path, {"name": sweep_name(cfg), "config": defining})


def splits_table(ctx, cells: list[Cell]) -> dict:
    """splits.json: every task's classes (indices into the dataset's class list, and names)."""
    ds = ctx.dataset
    out = {"dataset": ds.name, "num_classes": ds.num_classes, "split": ctx.cfg.split.name,
           "classes": ds.classes, "splits": {}}
    for ss in sorted({c.split_seed for c in cells}):
        sp = ctx.split(ss)
        out["splits"][str(ss)] = {t: {"num_classes": len(sp.task(t)), "indices": list(sp.task(t)),
                                      "names": [ds.classes[i] for i in sp.task(t)]} for t in ("A", "B")}
    if ctx.cfg.split.name == "dissimilar":  # the split was made: the dataset has two groups
        out["groups"] = {"A": ds.groups[0], "B": ds.groups[1]}
    return out


def merge_splits(path, new: dict) -> dict:
    """splits.json with the split seeds of earlier runs in the folder kept beside this run's."""
    try:
        old = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return new
    if not isinstance(old, dict) or not isinstance(old.get("splits"), dict) or old.get("dataset") != new["dataset"]:
        return new
    merged = {**old["splits"], **new["splits"]}
    return {**new, "splits": dict(sorted(merged.items(), key=lambda kv: int(kv[0])))}


def print_plan(cells: list[Cell], store: SweepStore, splits: dict | None = None) -> None:
    """Every network by its paper name and the base it needs, grouped by split, then the counts."""
    from collections import Counter

    from .treatments import BY_NAME

    by_split: dict[int, list[Cell]] = {}
    for c in cells:
        by_split.setdefault(c.split_seed, []).append(c)
    for ss, group in by_split.items():
        head = f"split {group[0].split}" + (f" seed {ss}" if group[0].split == "random" else "")
        if splits is not None:
            tasks = splits["splits"][str(ss)]
            head += f": task A {tasks['A']['num_classes']} classes, task B {tasks['B']['num_classes']}"
        log.info(head)
        for c in group:
            dep = c.base_dependency
            done = " (done)" if store.is_done(c.key) else ""
            need = dep.key if dep else "model.weights" if c.source == "pretrained" else "-"
            log.info(f"  {c.name:<7} {c.key:<30} needs {need}{done}")
    bases = [c for c in cells if c.treatment == "base"]
    per = Counter(BY_NAME[c.treatment].label for c in cells if c.treatment != "base")
    done = sum(store.is_done(c.key) for c in cells)
    n_splits = len(by_split)
    each = f"{n_splits} split(s) x ({len(bases) // n_splits} bases + {(len(cells) - len(bases)) // n_splits} cells)"
    log.info(f"plan: {each} = {len(bases)} base networks + {len(cells) - len(bases)} cells = "
          f"{len(cells)} networks ({done} already done)")
    log.info("  per treatment: " + ", ".join(f"{k} {v}" for k, v in per.items()))


class _ctrl_c_deferred:
    """Ctrl-C inside the ``with`` body is held until it ends, then raised as KeyboardInterrupt
    (main thread, Python's own handler only; elsewhere a plain block)."""

    def __enter__(self):
        self.pressed, self.previous = False, None
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            try:
                self.previous = signal.signal(signal.SIGINT, self._hold)
            except ValueError:  # not the main thread
                self.previous = None

    def _hold(self, signum, frame):
        self.pressed = True

    def __exit__(self, kind, exc, tb):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.pressed and kind is None:
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C outside training (reading data, estimating, drawing): records are safe
        log.warning("\ninterrupted; every finished network is kept: run the same command to resume")
        return 130
    finally:  # every line of this run is in its sweep.log, and the next run (a test's) starts clean
        logs.end_sweep_log()


def _main(argv: list[str] | None = None) -> int:
    from . import cli

    # --help, --cfg, hydra.* and -m are dealt with there (an exit status); else one sweep's overrides
    argv = cli.handle(list(sys.argv[1:] if argv is None else argv), main, __doc__)
    if isinstance(argv, int):
        return argv
    try:
        with _ctrl_c_deferred():  # Hydra/OmegaConf interrupted mid-update raise their own AttributeError
            cfg = compose(argv)
        validate(cfg)
        tracking.check(cfg)  # logger=tensorboard: the package is there
        logs.console(quiet=cfg.quiet, verbose=cfg.verbose)
        from .runner import SweepContext

        # Every check before the sweep folder is written. The dataset's classes and hierarchy
        # only: a dry run reads no image (CIFAR's files need not be there).
        store, cells = SweepStore(results_root(cfg)), plan(cfg)
        ctx = SweepContext(cfg, store)
        splits = splits_table(ctx, cells)  # also checks that the split can be made
        fit_to_data(cfg, ctx.dataset)
        if not cfg.dry_run:
            ctx.dataset.check()  # the files are there (or downloaded), before any training
        executor = make_executor(cfg)
        prepare(cfg, ctx.device, store, pin=not cfg.dry_run)
        atomic_write_json(store.root / "splits.json", merge_splits(store.root / "splits.json", splits))
    except ConfigError as e:
        log.error(f"error: {e}")
        return 2
    if not cfg.dry_run:
        logs.start_sweep_log(store.root, " ".join(argv) or "(defaults)")
    log.info(f"sweep {sweep_name(cfg)} -> {store.root} on {ctx.device}")
    names = unit_names(cfg.model)
    log.info(f"n counts the {len(names)} units of {cfg.model.name}: "
          + ", ".join(f"{i} {u}" for i, u in enumerate(names, 1)))
    if cfg.dry_run:
        print_plan(cells, store, splits)
        from . import eta

        eta.report(ctx, cells)  # every network's estimated time, the sweep's; Slurm: the timeout warning
        log.info(f"wrote {store.root / 'splits.json'}")
        return 0
    t0 = time.time()
    try:
        run_id = executor.run(ctx, cells, new_run_id())
    except LaunchError as e:
        log.error(f"error: {e}")
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C; launcher=local has stopped its networks first
        done = sum(store.is_done(c.key) for c in cells)
        log.warning(f"\ninterrupted: {done} of {len(cells)} networks finished; run the same command to resume")
        if isinstance(e, StillRunning):  # Ctrl-C twice: threads left inside torch ops, so no
            logs.end_sweep_log()         # interpreter shutdown around them (it would abort)
            sys.stdout.flush()
            os._exit(130)
        return 130
    if run_id is None:
        return 0  # submitted; running the same command again shows progress
    from . import analysis

    df = analysis.load(store.root)
    if len(df):
        analysis.write_table(store.root, df)
        summary = analysis.console_summary(df)
        tracking.finish(cfg, store.root, df, summary)  # logger=tensorboard: the summary run
        if cfg.analyze:
            if any(c.probe for c in cells):  # the probes' companion estimate: seconds, once per pair of weights
                from .analysis.cli import measure_cka

                try:
                    measure_cka([store.root], _CKA_DEFAULTS)
                except Exception as e:  # the records are safe; the figures are drawn without CKA
                    log.warning(f"CKA not measured ({type(e).__name__}: {e}); python -m transferlab.analysis "
                                f"{store.root} --cka measures it later")
            written = analysis.write_figures(store.root, df=df)
            for path in written:
                log.debug(f"wrote {path}")
            if written:
                log.info(f"wrote {len(written)} files (figures/, tables, report.md) in {store.root}")
        log.log(logs.RESULT, summary)
    s = summarize(store, cells, run_id)
    for key, error in s["errors"].items():
        log.warning(f"failed: {key}: {error}")
    for key, why in s["collapsed"].items():
        log.warning(f"collapsed (left out of the tables): {key}: {why}")
    not_run = f", {s['not_run']} not run" if s["not_run"] else ""
    collapsed = f" ({len(s['collapsed'])} collapsed)" if s["collapsed"] else ""
    log.log(logs.RESULT, f"sweep finished in {time.time() - t0:.0f}s: {s['trained']} trained{collapsed}, {s['skipped']} skipped, "
          f"{s['failed']} failed{not_run}; records in {store.root}"
          + ("; failed networks are retried when the command is run again" if s["failed"] or s["not_run"] else ""))
    return 1 if s["failed"] or s["not_run"] else 0


if __name__ == "__main__":
    sys.exit(main())

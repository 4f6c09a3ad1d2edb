"""The command line: python -m transferlab.analysis (and the transferlab-analysis script)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..log import RESULT, get
from .estimates import load_cka
from .frame import METRICS, _acc, load
from .report import console_summary, write_report, write_table

log = get(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.analysis",
                                description="Figures, tables and a report from one or several sweep folders.")
    p.add_argument("sweeps", nargs="*", help="sweep folders, e.g. results/synthetic-random results/synthetic-dissimilar")
    p.add_argument("--metric", choices=list(METRICS), default="final",
                   help="final: accuracy at the last evaluation; best10: mean of the 10 best evaluations "
                        "(the original plots' measure; needs 10 evaluations per network)")
    p.add_argument("--overlay-original", action="store_true",
                   help="draw the original study's results (shipped reference data) on Figures 2 and 3")
    p.add_argument("--original", action="store_true",
                   help="analyse the original study's own networks instead of sweeps (the paper's figures "
                        "and Table 1; writes to --out, default results/yosinski2014)")
    p.add_argument("--out", help="where to write (default: the sweep folder; for several, <parent>/<a>+<b>)")
    p.add_argument("--cka", action="store_true",
                   help="measure CKA unit by unit (baseA vs baseB on the target's validation images, every fine-tuned "
                        "cell with saved weights vs its start) into each folder's cka.csv; reused when unchanged")
    p.add_argument("--cka-kernels", default="linear", help="linear, rbf or linear,rbf (default: linear)")
    p.add_argument("--cka-images", type=int, default=500, help="validation images CKA is measured on (default 500)")
    p.add_argument("--device", default=None, help="where CKA runs (default: the sweep's device)")
    args = p.parse_args(argv)
    if args.original == bool(args.sweeps):
        p.error("give sweep folders, or --original (not both)")
    if args.original:
        from .. import reference

        df, metric, overlay = reference.networks(), "best10", False
        out = Path(args.out or Path("results") / reference.SWEEP)
    else:
        roots = [Path(s) for s in args.sweeps]
        for root in roots:
            if not (root / "cells").is_dir():
                log.error(f"error: {root} is not a sweep folder (it has no cells/ subfolder)")
                return 2
        out = Path(args.out) if args.out else roots[0] if len(roots) == 1 else \
            roots[0].parent / "+".join(r.name for r in roots)
        df, metric, overlay = load(*roots), args.metric, args.overlay_original
        if df.empty:
            log.error(f"error: {', '.join(map(str, roots))} hold(s) no finished cell yet")
            return 1
        if args.cka and not measure_cka(roots, args):
            return 2
    try:
        _acc(df, metric)
    except ValueError as e:
        log.error(f"error: {e}")
        return 2
    for path in (write_table(out, df), out / "history.csv"):
        log.info(f"wrote {path}")
    cka = load_cka(*roots) if not args.original else None
    for path in write_report(df, out, metric, overlay, title=out.name, cka=cka):
        log.info(f"wrote {path}")
    log.log(RESULT, console_summary(df, metric))
    return 0




def measure_cka(roots, args) -> bool:
    """CKA of every sweep folder into its cka.csv; False (after saying why) on a bad argument."""
    from ..cka import sweep_cka
    from ..store import atomic_write_bytes

    kernels = tuple(k.strip() for k in args.cka_kernels.split(",") if k.strip())
    bad = [k for k in kernels if k not in ("linear", "rbf")]
    if bad or not kernels or args.cka_images < 4:
        what = f"--cka-kernels={args.cka_kernels!r}; allowed: linear, rbf or linear,rbf" if bad or not kernels else \
            f"--cka-images={args.cka_images}; at least 4 images"
        log.error(f"error: {what}")
        return False
    for root in roots:
        try:
            table = sweep_cka(root, kernels, args.cka_images, device=args.device)
        except (ValueError, RuntimeError, OSError) as e:  # e.g. the data moved since the sweep (data.root)
            log.error(f"error: CKA of {root}: {type(e).__name__}: {e}")
            return False
        if len(table):
            atomic_write_bytes(root / "cka.csv", table.to_csv(index=False).encode())
            log.info(f"wrote {root / 'cka.csv'} ({table.groupby(['pair', 'seed', 'split_seed']).ngroups} pair(s) of networks, "
                  f"{len(table)} values)")
        else:
            log.warning(f"{root}: no pair of networks to compare (baseA and baseB, or fine-tuned cells with saved weights)")
    return True

"""The command line: python -m transferlab.analysis (and the transferlab-analysis script)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .frame import METRICS, _acc, load
from .report import console_summary, write_report, write_table


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
                print(f"error: {root} is not a sweep folder (it has no cells/ subfolder)", file=sys.stderr)
                return 2
        out = Path(args.out) if args.out else roots[0] if len(roots) == 1 else \
            roots[0].parent / "+".join(r.name for r in roots)
        df, metric, overlay = load(*roots), args.metric, args.overlay_original
        if df.empty:
            print(f"error: {', '.join(map(str, roots))} hold(s) no finished cell yet", file=sys.stderr)
            return 1
    try:
        _acc(df, metric)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in (write_table(out, df), out / "history.csv"):
        print(f"wrote {path}")
    for path in write_report(df, out, metric, overlay, title=out.name):
        print(f"wrote {path}")
    print(console_summary(df, metric))
    return 0



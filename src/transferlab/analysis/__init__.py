"""Records -> tidy DataFrame -> the paper's figures and tables (Yosinski et al. 2014, section 4).

    python -m transferlab.analysis results/<sweep> [results/<other sweep> ...]
           [--metric final|best10] [--overlay-original] [--out DIR]
    python -m transferlab.analysis --original      # the original study's own numbers

writes cells.csv, figures/ (Figure 2, Figure 3, the decomposition, tables) and report.md.

In a notebook:
    from transferlab import analysis, reference
    df = analysis.load("results/synthetic-random", "results/synthetic-dissimilar")
    analysis.figure2(df)                 # matplotlib Figures
    analysis.figure3(df)
    analysis.table1(df)                  # DataFrames, in percentage points
    analysis.decomposition(df)
    analysis.estimates_figure(df, analysis.load_cka("results/synthetic-random"))  # probes and CKA
    analysis.table1(reference.networks(), metric="best10")   # the original study's numbers

Conventions:
- Every network is compared with its own base: the base of the same sweep, split, split seed,
  training seed and target task. Footnote 3 of the paper: networks trained toward task A are
  the same treatment as those toward B, relabelled (AnA is counted as BnB, BnA as AnB), so
  with both directions trained the tables pool them, and the base column pools baseA and baseB;
  with one direction the base is that target's base alone.
- A replicate is one (sweep, split, split seed, training seed): the unit of every interval
  (``transferlab.stats``). Differences are paired within a replicate and averaged there; the
  interval is Student's t over replicates. With one replicate the tables say there is none.
- ``metric``: "final" (accuracy at the last evaluation) or "best10" (mean of the 10 best
  validation evaluations of the run, the measure of the original plots; it selects on
  validation data and is refused for networks with fewer than 10 evaluations).

The package, cut along its seams (no module imports one that imports it back):
    frame    records -> frame, and the row selections every table and figure makes
    tables   the statistics tables, pure DataFrame functions
    figures  the paper's figures and the learning curves
    estimates  the probes and CKA beside the transfer drop: the comparison, its figure, the costs
    report   files: cells.csv, history.csv, figures/, report.md; the console summary
    cli      the command line (``main``)
"""
from __future__ import annotations

from .frame import (BEST_K, COLUMNS, FIG2, HISTORY, LABELS, METRIC_TEXT, METRICS, OWN_BASE, TASK_NAMES,
                    _acc, _depth, _pick_split, _ylabel, directions, history_frame, load, metric_column,
                    own_bases, records_frame)
from .tables import (EFFECTS, _pp, _sampling_error_pp, caption, caveats, decomposition, effects,
                     effects_table, markdown_table, paper_table1, relative, summary, table1)
from .figures import (OFFSETS, ORIGINAL, STYLE, _curve, _empty, _evaluations, _finish_panel, _line,
                      _original, _points, _relative_groups, decomposition_figure, figure2, figure3,
                      has_curves, learning_curves)
from .estimates import costs, estimates_figure, estimates_frame, estimates_table, load_cka, predictions
from .report import SECTIONS, _save, console_summary, write_figures, write_report, write_table
from .cli import main

"""Analysis: Table 1 and the decomposition against hand computations, the original study's
Table 1 from its own numbers, figure contents, several sweeps at once, and the CLI."""
import math

import numpy as np
import pandas as pd
import pytest
from fake_sweep import FT, accuracy, make_sweep

from transferlab import analysis, reference
from transferlab.cells import Cell



def frame(rows, num_layers=4):
    """A DataFrame as analysis.load gives it, from (treatment, target, n, split_seed, seed, acc) rows."""
    recs = []
    for treatment, target, n, ss, seed, acc, *split in rows:
        cell = Cell(treatment, target, n, split[0] if split else "random", ss, seed)
        recs.append({"status": "done", **cell.as_dict(), "num_layers": num_layers,
                     "metrics": {"val_top1": acc}, "history": [{"val_top1": acc}]})
    return analysis.records_frame(recs, sweep="hand")


# --------------------------------------------------------------------------- the original study

def test_table1_of_the_original_numbers_is_the_papers():
    t = analysis.paper_table1(reference.networks(), metric="best10")
    assert list(t.index) == ["1-7", "3-7", "5-7"]
    assert list(t.over_base_pp.round(1)) == [1.6, 1.8, 2.1]
    assert list(t.over_selffer_pp.round(1)) == [1.4, 1.4, 1.7]
    # Pooled networks: every AnB+ / BnB+ (AnA+ counts as BnB+) in the range, all 8 bases.
    assert list(t["AnB+"]) == [10, 7, 3] and list(t["BnB+"]) == [10, 8, 5] and set(t.base) == {8}


def test_table1_of_the_original_numbers_paired_with_their_own_bases():
    """Each AnB+ of the original study against its own base: a smaller boost than the pooled
    one, and no BnB+ of the same replicate, target and n to pair with."""
    t = analysis.table1(reference.networks(), metric="best10")
    assert list(t.over_base_pp.round(2)) == [0.95, 1.15, 1.16]
    assert list(t.replicates) == [2, 2, 1] and list(t["AnB+"]) == [10, 7, 3]
    assert (t.pairs == 0).all() and t.over_selffer_pp.isna().all()


def test_reference_networks_in_the_analysis_schema():
    df = reference.networks()
    assert len(df) == len(reference.raw()) == 148
    assert df.val_top1.isna().all() and df.best10_top1.notna().all()
    assert df.key.is_unique
    # Dissimilar split: man-made is task A, natural task B, as in data/splits.py.
    dis = df[(df.split == "dissimilar") & (df.treatment == "base")].set_index("target")
    assert dis.loc["A", "name"] == "base-manmade" and dis.loc["B", "target_classes"] == 449
    # The means of the reference README's table.
    s = analysis.summary(df, "best10")
    assert s.loc["AnB", 0] == pytest.approx(0.6251, abs=1e-4)
    assert s.loc["AnB", 7] == pytest.approx(0.5425, abs=1e-3) and s.loc["BnB+", 3] == pytest.approx(0.631, abs=6e-4)
    with pytest.raises(ValueError, match="best10"):
        analysis.table1(df)  # the original has no final-epoch accuracy


def test_decomposition_of_the_original_matches_the_papers_reading():
    d = analysis.decomposition(reference.networks(), "best10").set_index(["effect", "n"])
    # "On layers 3, 4, and 5 the first effect dominates; on 6 and 7 specificity dominates."
    for n in (4, 5):
        assert d.loc[("co-adaptation", n), "mean_pp"] > d.loc[("specificity", n), "mean_pp"]
    for n in (6, 7):
        assert d.loc[("specificity", n), "mean_pp"] > d.loc[("co-adaptation", n), "mean_pp"]
    # Four replicates (split seeds), each pooling its two directions.
    assert d.loc[("transfer", 7), "replicates"] == 4 and d.loc[("transfer", 7), "networks"] == 8
    assert d.loc[("co-adaptation", 7), "replicates"] == 4


# --------------------------------------------------------------------------- hand computations

def test_table1_matches_a_hand_computation():
    df = frame([
        ("base", "A", 0, 0, 0, 0.50), ("base", "B", 0, 0, 0, 0.60),
        ("transfer_ft", "B", 1, 0, 0, 0.58), ("transfer_ft", "B", 2, 0, 0, 0.60),
        ("transfer_ft", "A", 3, 0, 0, 0.62), ("transfer_ft", "B", 3, 0, 0, 0.64),
        ("selffer_ft", "A", 1, 0, 0, 0.54), ("selffer_ft", "B", 3, 0, 0, 0.56),
        ("transfer", "B", 3, 0, 0, 0.10),                    # frozen: not in Table 1
        ("base", "B", 0, 0, 0, 0.95, "dissimilar"),           # another split: not pooled
    ])
    t = analysis.table1(df)
    assert list(t.index) == ["1-3", "3-3"]                   # L = 4: ranges 1..3 and 3..3; 5..3 is empty
    # Each AnB+ minus its own base (B: -2, 0, +4; A: +12), one replicate: no interval.
    assert t.loc["1-3", "over_base_pp"] == pytest.approx(3.5)
    assert t.loc["3-3", "over_base_pp"] == pytest.approx(8.0)
    # Only (B, n=3) has both an AnB+ and a BnB+: .64 - .56.
    assert t.loc["1-3", "over_selffer_pp"] == pytest.approx(8.0) and t.loc["1-3", "pairs"] == 1
    assert list(t["AnB+"]) == [4, 2] and list(t.replicates) == [1, 1]
    assert t.over_base_ci_pp.isna().all() and t.over_selffer_ci_pp.isna().all()
    # The paper's own pooled computation of the same networks.
    p = analysis.paper_table1(df, metric="final")
    assert p.loc["1-3", "over_base_pp"] == pytest.approx(6.0)      # mean(.58,.60,.62,.64) - mean(.50,.60)
    assert p.loc["3-3", "over_selffer_pp"] == pytest.approx(7.0)   # .63 - .56


def test_decomposition_pairs_networks_within_replicates():
    rows = [  # replicate (split seed) x target: base, BnB, AnB at n = 1
        ("base", "B", 0, 0, 0, .60), ("selffer", "B", 1, 0, 0, .58), ("transfer", "B", 1, 0, 0, .57),
        ("base", "B", 0, 1, 0, .62), ("selffer", "B", 1, 1, 0, .58), ("transfer", "B", 1, 1, 0, .55),
        ("base", "A", 0, 0, 0, .58), ("selffer", "A", 1, 0, 0, .52), ("transfer", "A", 1, 0, 0, .51),
        ("base", "A", 0, 1, 0, .61), ("transfer", "A", 1, 1, 0, .60),   # no BnA in this target
        ("selffer", "B", 2, 0, 0, .50),                                    # a lone n = 2
        ("selffer", "B", 3, 5, 0, .50),                                    # its base is missing
    ]
    d = analysis.decomposition(frame(rows)).set_index(["effect", "n"])
    co, spec, total = d.loc[("co-adaptation", 1)], d.loc[("specificity", 1)], d.loc[("transfer", 1)]
    # co-adaptation: split seed 0: (.02 + .06) / 2, split seed 1: .04 -> 4 pp in both
    assert co.replicates == 2 and co.networks == 3 and co.mean_pp == pytest.approx(4.0)
    assert co.ci_low_pp == pytest.approx(4.0) and co.ci_high_pp == pytest.approx(4.0)
    # specificity: (.01 + .01) / 2 and .03 -> mean 2 pp, sd sqrt(2) pp
    t975_dof1 = 12.706204736174707
    assert spec.replicates == 2 and spec.mean_pp == pytest.approx(2.0)
    assert spec.ci_high_pp - spec.mean_pp == pytest.approx(t975_dof1 * math.sqrt(2) / math.sqrt(2))
    # whole gap: (.03 + .07) / 2 and (.07 + .01) / 2 (the target without BnA counts here)
    assert total.replicates == 2 and total.networks == 4 and total.mean_pp == pytest.approx(4.5)
    lone = d.loc[("co-adaptation", 2)]
    assert lone.replicates == 1 and lone.mean_pp == pytest.approx(10.0) and math.isnan(lone.ci_low_pp)
    assert ("co-adaptation", 3) not in d.index


def test_best10_is_the_mean_of_the_ten_best_of_all_evaluations(tmp_path):
    from fake_sweep import write_record

    evals = [0.1 * i for i in range(12)][::-1] + [0.05]   # 13 evaluations, the last one poor
    write_record(tmp_path, Cell("base", "B", 0, "random", 0, 0), evals)
    df = analysis.load(tmp_path)
    assert df.val_top1.item() == pytest.approx(0.05)
    assert df.best10_top1.item() == pytest.approx(np.mean([0.1 * i for i in range(2, 12)]))
    assert df.evaluations.item() == 13
    with pytest.raises(ValueError, match="metric"):
        analysis.summary(df, "best5")


# --------------------------------------------------------------------------- figures

def _by_gid(artists):
    return {a.get_gid(): a for a in artists if a.get_gid()}


def test_figure2_draws_every_network_and_the_means(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "r"))           # 2 split seeds x 2 directions, n = 1..3
    fig = analysis.figure2(df)
    top, bottom = fig.axes[:2]
    pts = _by_gid(top.collections)
    assert set(pts) == {"base", "BnB", "BnB+", "AnB", "AnB+"}
    assert len(pts["base"].get_offsets()) == 4                # baseA and baseB of both splits (footnote 3)
    for lab, off in analysis.OFFSETS.items():
        if lab in ("PnB", "PnB+"):                             # no pretrained source in this sweep
            continue
        xy = pts[lab].get_offsets()
        if lab != "base":
            assert len(xy) == 12                               # 4 replicates x 3 values of n
        assert set(np.round(xy[:, 0] - off, 6)) <= {0, 1, 2, 3}
    lines = _by_gid(bottom.lines)
    base = np.mean([accuracy(Cell("base", t, 0, "random", s, 0)) for t in "AB" for s in (0, 1)])
    anb = [np.mean([accuracy(Cell("transfer", t, n, "random", s, 0)) for t in "AB" for s in (0, 1)]) for n in (1, 2, 3)]
    assert list(lines["AnB"].get_xdata()) == [0, 1, 2, 3]
    assert lines["AnB"].get_ydata() == pytest.approx([base, *anb])
    # The paper's markers: circles for base and selffers, diamonds for transfers.
    assert [lines[lab].get_marker() for lab in ("BnB", "BnB+", "AnB", "AnB+")] == ["o", "o", "D", "D"]


def test_figure2_overlay_of_the_original_is_aligned_at_the_base(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "r"))
    fig = analysis.figure2(df, overlay_original=True)
    bottom, twin = fig.axes[1], fig.axes[2]
    orig = _by_gid(twin.lines)
    assert set(orig) == {f"original:{lab}" for lab in ("BnB", "BnB+", "AnB", "AnB+")}
    assert orig["original:AnB"].get_ydata()[-1] == pytest.approx(0.5425, abs=1e-3)
    ours = df[df.treatment == "base"].val_top1.mean()
    shift = np.subtract(twin.get_ylim(), bottom.get_ylim())
    assert shift == pytest.approx([0.6251 - ours] * 2, abs=1e-4)      # same scale, bases level


def test_figure3_panels_from_two_sweeps(tmp_path):
    r = make_sweep(tmp_path / "rand", treatments=FT + ("random",))
    d = make_sweep(tmp_path / "dis", split="dissimilar", treatments=("transfer",))
    df = analysis.load(r, d)
    assert set(df.sweep) == {"rand", "dis"}
    fig = analysis.figure3(df)
    axes = {ax.get_gid(): ax for ax in fig.axes}
    assert set(_by_gid(axes["dissimilar"].lines)) == {"dissimilar:A", "dissimilar:B", "random-split:AnB"}
    assert "random-weights" in _by_gid(axes["random-weights"].lines)
    rel = _by_gid(axes["relative"].lines)
    ns = [1, 2, 3]
    # Each network minus its own base: the fake pattern subtracts a fixed drop per n.
    assert rel["relative:dissimilar"].get_ydata() == pytest.approx([0] + [-2 * (0.02 * (n == 2) + 0.03 * n) for n in ns])
    assert rel["relative:random"].get_ydata() == pytest.approx([0] + [-0.1 * n for n in ns])
    assert rel["relative:AnB"].get_ydata() == pytest.approx([0] + [-(0.02 * (n == 2) + 0.03 * n) for n in ns])

    fig = analysis.figure3(df, overlay_original=True)
    orig = _by_gid(next(ax for ax in fig.axes if ax.get_gid() == "relative").lines)
    assert orig["original:dissimilar"].get_ydata()[-1] == pytest.approx(-0.25, abs=0.005)   # paper: "25%"
    assert orig["original:AnB"].get_ydata()[-1] == pytest.approx(-0.08, abs=0.005)          # paper: "8%"


def test_figure3_says_what_is_missing(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "r"))           # random split, no random weights
    axes = {ax.get_gid(): ax for ax in analysis.figure3(df).axes}
    assert "no dissimilar" in axes["dissimilar"].texts[0].get_text()
    assert "no random-weights" in axes["random-weights"].texts[0].get_text()
    assert set(_by_gid(axes["relative"].lines)) == {"relative:AnB"}


def test_decomposition_figure_has_errorbars(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "r"))
    ax = analysis.decomposition_figure(df).axes[0]
    bars = {c.get_label().split(":")[0]: c for c in ax.containers}
    assert {"co-adaptation", "specificity", "transfer"} <= set(bars)
    dec = analysis.decomposition(df).set_index(["effect", "n"])
    assert np.asarray(bars["co-adaptation"].lines[0].get_ydata(), float) == pytest.approx(dec.loc["co-adaptation"].mean_pp.values)


# --------------------------------------------------------------------------- files and CLI

def test_cli_writes_figures_tables_and_report(tmp_path, capsys):
    r = make_sweep(tmp_path / "rand", treatments=FT + ("random",), epochs=10)  # best10 needs 10 evaluations
    assert analysis.main([str(r)]) == 0
    for name in ("cells.csv", "report.md", "figures/figure2.png", "figures/figure2.pdf", "figures/figure3.png",
                 "figures/decomposition.png", "figures/table1.csv", "figures/decomposition.csv",
                 "figures/summary.md"):
        assert (r / name).is_file(), name
    report = (r / "report.md").read_text()
    for part in ("## Figure 2", "figures/figure3.png", "## Table 1", "1.6 / 1.4", "1.8 / 1.4", "## Decomposition"):
        assert part in report, part
    t1 = pd.read_csv(r / "figures/table1.csv", index_col=0)
    assert list(t1.index) == ["1-3", "3-3"]

    d = make_sweep(tmp_path / "dis", split="dissimilar", treatments=("transfer",), epochs=10)
    assert analysis.main([str(r), str(d), "--metric", "best10", "--overlay-original"]) == 0
    out = tmp_path / "rand+dis"
    assert (out / "report-best10.md").is_file() and (out / "figures/figure3-best10.png").is_file()
    assert len(pd.read_csv(out / "cells.csv")) == len(analysis.load(r, d))
    assert analysis.main([str(tmp_path / "nope")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err

    # The original study's own numbers through the same pipeline: paired, and the paper's column.
    assert analysis.main(["--original", "--out", str(tmp_path / "orig")]) == 0
    t1 = pd.read_csv(tmp_path / "orig/figures/table1-best10.csv", index_col=0)
    assert list(t1.over_base_pp.round(2)) == [0.95, 1.15, 1.16]
    assert "1.6 / 1.4" in (tmp_path / "orig/report-best10.md").read_text()


def test_report_says_what_is_not_there(tmp_path):
    r = make_sweep(tmp_path / "r", treatments=("transfer",))
    files = analysis.write_figures(r)
    report = (r / "report.md").read_text()
    assert "Not drawn" in report and "no fine-tuned transfer" in report and "no frozen selffer" not in report
    assert r / "figures/figure3.png" not in files and r / "figures/table1.csv" not in files
    with pytest.raises(FileNotFoundError):
        analysis.load(tmp_path / "missing")


def test_learning_curves_and_history_csv(tmp_path):
    r = make_sweep(tmp_path / "rand", epochs=4)       # every curve rises 1 point per evaluation
    df = analysis.load(r)
    analysis.write_table(r, df)
    hist = pd.read_csv(r / "history.csv")
    assert len(hist) == 4 * len(df) and set(hist.key) == set(df.key)
    one = hist[hist.key == df.key.iloc[0]]
    assert list(one.epoch) == [1, 2, 3, 4] and one.val_top1.is_monotonic_increasing
    assert "history" not in pd.read_csv(r / "cells.csv").columns
    fig = analysis.learning_curves(df)
    left, right = fig.axes[:2]
    bases = df[df.treatment == "base"]                # both directions: every base is an own base
    assert len(left.lines) == len(bases) == 4
    assert all("+1.0 pts in the last 25%, still rising" in ln.get_label() for ln in left.lines)
    assert len(right.lines) == len(df) - len(bases)
    flat = analysis.learning_curves(analysis.load(make_sweep(tmp_path / "flat", epochs=4, split_seeds=(0,)))
                                    .assign(history=lambda d: [[{**h, "val_top1": 0.5} for h in hs]
                                                               for hs in d.history],
                                            late_gain_pp=0.0, plateau=True))
    assert all("plateau" in ln.get_label() for ln in flat.axes[0].lines)


def test_report_has_a_convergence_section_or_says_why_not(tmp_path):
    r = make_sweep(tmp_path / "rand")
    analysis.write_figures(r)
    report = (r / "report.md").read_text()
    assert "## Convergence" in report and "figures/learning_curves.png" in report
    assert "0 of 4 base network(s) at a plateau" in report
    out = tmp_path / "orig"
    analysis.write_report(reference.networks(), out, "best10")
    assert "No learning curves" in (out / "report-best10.md").read_text()

"""Numbers a reviewer can trust: every comparison against the network's own base, intervals over
replicates (split seed x training seed) with differences paired within each, the metric named
in every table, best-k only where there are k evaluations, and coverage checked on simulated
sweeps with a known effect."""
import math

import numpy as np
import pandas as pd
import pytest
from fake_sweep import make_sweep, write_record

from transferlab import analysis
from transferlab.cells import Cell

T975 = {1: 12.706204736174707, 2: 4.302652729911275, 3: 3.182446305284263}  # Student t, 97.5%


def frame(rows, num_layers=4, evaluations=1):
    """analysis.records_frame of (treatment, target, n, split_seed, seed, acc) rows."""
    recs = []
    for treatment, target, n, ss, seed, acc in rows:
        cell = Cell(treatment, target, n, "random", ss, seed)
        recs.append({"status": "done", **cell.as_dict(), "num_layers": num_layers,
                     "metrics": {"val_top1": acc}, "history": [{"val_top1": acc}] * evaluations})
    return analysis.records_frame(recs, sweep="hand")


# --------------------------------------------------------------------------- the right base

ONE_DIRECTION = [  # directions=[B]: baseA is only the source of the transfer cells
    ("base", "A", 0, 0, 0, 0.50), ("base", "B", 0, 0, 0, 0.70),
    ("transfer_ft", "B", 1, 0, 0, 0.72), ("transfer_ft", "B", 2, 0, 0, 0.74), ("transfer_ft", "B", 3, 0, 0, 0.76),
    ("selffer_ft", "B", 1, 0, 0, 0.71), ("selffer_ft", "B", 2, 0, 0, 0.71), ("selffer_ft", "B", 3, 0, 0, 0.71),
    ("transfer", "B", 1, 0, 0, 0.66), ("selffer", "B", 1, 0, 0, 0.69),
]


def test_with_one_direction_the_base_is_the_targets_own_base():
    df = frame(ONE_DIRECTION)
    s = analysis.summary(df)
    assert list(s[0]) == pytest.approx([0.70] * len(s))       # baseB, not the mean with baseA (0.60)
    t1 = analysis.table1(df)
    assert t1.loc["1-3", "over_base_pp"] == pytest.approx(4.0)       # mean(.72,.74,.76) - baseB
    assert t1.loc["3-3", "over_base_pp"] == pytest.approx(6.0)
    assert t1.loc["1-3", "over_selffer_pp"] == pytest.approx(3.0)    # paired with BnB+ at each n
    eff = analysis.effects(df).set_index(["label", "n"])
    assert eff.loc[("AnB", 1), "mean_pp"] == pytest.approx(-4.0)
    assert eff.loc[("BnB", 1), "mean_pp"] == pytest.approx(-1.0)
    dec = analysis.decomposition(df).set_index(["effect", "n"])
    assert dec.loc[("co-adaptation", 1), "mean_pp"] == pytest.approx(1.0)
    assert dec.loc[("specificity", 1), "mean_pp"] == pytest.approx(3.0)


def test_figure2_draws_only_the_base_it_compares_with():
    fig = analysis.figure2(frame(ONE_DIRECTION))
    top, bottom = fig.axes[:2]
    base = next(c for c in top.collections if c.get_gid() == "base")
    assert list(base.get_offsets()[:, 1]) == [pytest.approx(0.70)]
    line = next(ln for ln in bottom.lines if ln.get_gid() == "AnB+")
    assert line.get_ydata()[0] == pytest.approx(0.70)


def test_with_both_directions_bases_are_pooled_as_in_the_paper():
    rows = ONE_DIRECTION + [("transfer_ft", "A", 1, 0, 0, 0.54), ("selffer_ft", "A", 1, 0, 0, 0.52)]
    df = frame(rows)
    s = analysis.summary(df)
    assert list(s[0]) == pytest.approx([0.60] * len(s))       # footnote 3: baseA and baseB
    t1 = analysis.table1(df)
    # Every AnB+ network (AnA+ relabelled: BnA+) against its own base, averaged in the replicate.
    assert t1.loc["1-3", "over_base_pp"] == pytest.approx((2 + 4 + 6 + 4) / 4)


# --------------------------------------------------------------------------- intervals

def test_table1_interval_is_over_replicates_paired_within_each():
    rows = []
    boosts = {0: 0.02, 1: 0.05, 2: 0.03}            # AnB+ - own base, per replicate (split seed)
    for ss, boost in boosts.items():
        base = 0.6 + 0.05 * ss                        # replicates differ a lot; the pairing removes it
        rows += [("base", "A", 0, ss, 0, base - 0.1), ("base", "B", 0, ss, 0, base)]
        rows += [("transfer_ft", "B", n, ss, 0, base + boost) for n in (1, 2, 3)]
        rows += [("selffer_ft", "B", n, ss, 0, base + boost - 0.01 * ss) for n in (1, 2, 3)]
    t1 = analysis.table1(pd.concat([frame(rows)]))
    r = t1.loc["1-3"]
    assert r.replicates == 3
    assert r.over_base_pp == pytest.approx(100 * np.mean(list(boosts.values())))
    sd = 100 * np.std(list(boosts.values()), ddof=1)
    assert r.over_base_ci_pp == pytest.approx(T975[2] * sd / math.sqrt(3))
    # over BnB+: 0, 1, 2 points in the three replicates
    assert r.over_selffer_pp == pytest.approx(1.0)
    assert r.over_selffer_ci_pp == pytest.approx(T975[2] * 1.0 / math.sqrt(3))


def test_the_two_directions_of_a_replicate_are_one_unit():
    rows = []
    for ss, (da, db) in enumerate([(0.01, 0.03), (0.05, 0.01)]):   # base - BnB per target
        rows += [("base", "A", 0, ss, 0, 0.6), ("base", "B", 0, ss, 0, 0.7)]
        rows += [("selffer", "A", 1, ss, 0, 0.6 - da), ("selffer", "B", 1, ss, 0, 0.7 - db)]
        rows += [("transfer", "A", 1, ss, 0, 0.5), ("transfer", "B", 1, ss, 0, 0.6)]
    dec = analysis.decomposition(frame(rows)).set_index(["effect", "n"])
    co = dec.loc[("co-adaptation", 1)]
    assert co.replicates == 2                         # not 4: A- and B-targets share a split
    assert co.mean_pp == pytest.approx(2.5)           # replicate means 2 and 3
    assert co.ci_high_pp - co.mean_pp == pytest.approx(T975[1] * (1 / math.sqrt(2)) / math.sqrt(2))


def test_one_replicate_says_in_words_that_there_is_no_interval(tmp_path):
    root = make_sweep(tmp_path / "one", split_seeds=(0,), targets=("B",))
    files = analysis.write_figures(root)
    for path in [root / "report.md"] + [f for f in files if f.suffix == ".md"]:
        text = path.read_text()
        assert "nan" not in text.lower(), path.name
    report = (root / "report.md").read_text()
    assert report.count("1 replicate: no interval") >= 3      # Table 1, decomposition, effects
    t1 = analysis.table1(analysis.load(root))
    assert (t1.replicates == 1).all() and t1.over_base_ci_pp.isna().all()


def _simulated_sweep(rng, replicates, effect, targets=("B",)):
    """Networks whose accuracy has a replicate effect shared by everything in the replicate, an
    effect size that varies by split (shared by both directions of a replicate), a source effect
    shared by the cells that copy the same base, and a network's own noise."""
    rows = []
    for ss in range(replicates):
        rep, eff = rng.normal(0, 0.03), effect + rng.normal(0, 0.01)
        for target in targets:
            src_ft, src_self = rng.normal(0, 0.02), rng.normal(0, 0.02)
            rows.append(("base", target, 0, ss, 0, 0.6 + rep + rng.normal(0, 0.01)))
            for n in (1, 2, 3):
                rows.append(("transfer_ft", target, n, ss, 0, 0.6 + rep + eff + src_ft + rng.normal(0, 0.01)))
                rows.append(("selffer_ft", target, n, ss, 0, 0.6 + rep + src_self + rng.normal(0, 0.01)))
                rows.append(("selffer", target, n, ss, 0, 0.6 + rep - eff + src_self + rng.normal(0, 0.01)))
    return frame(rows)


@pytest.mark.parametrize("targets", [("B",), ("A", "B")])
def test_95_percent_intervals_cover_a_known_effect_95_percent_of_the_time(targets):
    rng = np.random.default_rng(0)
    effect, sims, hits = 0.02, 400, {"over_base": 0, "over_selffer": 0, "co-adaptation": 0}
    for _ in range(sims):
        df = _simulated_sweep(rng, 4, effect, targets)
        t1 = analysis.table1(df).loc["1-3"]
        hits["over_base"] += abs(t1.over_base_pp - 100 * effect) <= t1.over_base_ci_pp
        hits["over_selffer"] += abs(t1.over_selffer_pp - 100 * effect) <= t1.over_selffer_ci_pp
        co = analysis.decomposition(df).set_index(["effect", "n"]).loc[("co-adaptation", 2)]
        hits["co-adaptation"] += co.ci_low_pp <= 100 * effect <= co.ci_high_pp
    for what, k in hits.items():
        assert 0.92 <= k / sims <= 0.98, f"{what}: {k / sims:.3f} of the 95% intervals hold the effect"


# --------------------------------------------------------------------------- metric, best-k

def test_best10_refuses_with_fewer_than_10_evaluations(tmp_path):
    df = analysis.load(make_sweep(tmp_path / "six", epochs=6))
    with pytest.raises(ValueError, match=r"best10.*fewer than 10 evaluations.*6.*evals_per_epoch"):
        analysis.summary(df, "best10")
    assert analysis.main([str(tmp_path / "six"), "--metric", "best10"]) == 2
    df = analysis.load(make_sweep(tmp_path / "twelve", epochs=12))
    assert analysis.summary(df, "best10").notna().all().all()


def test_every_table_names_its_metric_and_its_interval(tmp_path):
    root = make_sweep(tmp_path / "r")
    analysis.write_figures(root)
    for md in sorted((root / "figures").glob("*.md")):
        text = md.read_text()
        assert "top-1 accuracy (final evaluation)" in text, md.name
        if md.stem != "summary":
            assert "95% Student-t interval over 2 replicates" in text, md.name


# --------------------------------------------------------------------------- convergence

def test_plateau_criterion():
    from transferlab.convergence import plateau

    steps = list(range(10, 210, 10))                  # 20 evaluations over 200 steps
    rising = [0.5 + 0.02 * i for i in range(20)]
    flat = [0.5 + 0.02 * min(i, 10) for i in range(20)]
    assert plateau(steps, rising)["plateau"] is False
    assert plateau(steps, rising)["gain_pp"] == pytest.approx(100 * 0.02 * 5, abs=1e-9)
    assert plateau(steps, flat)["plateau"] is True
    noisy = [v + (0.003 if i % 2 else -0.003) for i, v in enumerate(flat)]
    assert plateau(steps, noisy)["plateau"] is True   # window means, not single evaluations
    assert plateau([100], [0.5])["plateau"] is None    # one evaluation says nothing


def test_report_warns_about_under_trained_bases_and_selffers_above_their_base(tmp_path):
    root = tmp_path / "r"
    for ss in (0, 1, 2):
        write_record(root, Cell("base", "A", 0, "random", ss, 0), [0.3, 0.5, 0.6, 0.7])  # still rising
        write_record(root, Cell("base", "B", 0, "random", ss, 0), [0.3, 0.5, 0.6, 0.7])
        for n in (1, 2):
            write_record(root, Cell("selffer", "B", n, "random", ss, 0), [0.6, 0.78, 0.78 + 0.001 * ss, 0.78 + 0.002 * ss])
            write_record(root, Cell("transfer", "B", n, "random", ss, 0), [0.5, 0.6, 0.6, 0.6])
    df = analysis.load(root)
    assert not df[df.treatment == "base"].plateau.any()
    caveats = analysis.caveats(df)
    assert any("under-trained" in w and "train.epochs" in w for w in caveats)
    assert any("BnB" in w and "beat" in w for w in caveats)
    analysis.write_figures(root)
    report = (root / "report.md").read_text()
    assert "under-trained" in report and "raise train.epochs" in report


def test_one_replicate_selffer_caveat_weighs_sampling_error_and_knows_the_bases_converged(tmp_path):
    """With one replicate a selffer "beats" its base only beyond the validation set's sampling
    error; with bases at a plateau the caveat says so instead of asking for more epochs."""
    root = tmp_path / "r"
    flat = [0.80] * 8                                           # a plateau
    for t in "AB":
        write_record(root, Cell("base", t, 0, "random", 0, 0), flat, val_images=1000)
    write_record(root, Cell("selffer", "B", 1, "random", 0, 0), [0.81] * 8, val_images=1000)   # +1: noise
    write_record(root, Cell("selffer", "B", 2, "random", 0, 0), [0.86] * 8, val_images=1000)   # +6: beyond
    caveats = analysis.caveats(analysis.load(root))
    # 1.96 * sqrt(2 p (1 - p) / 1000) with p the mean accuracy of the networks (0.8175): 3.4 points
    assert len(caveats) == 1, caveats
    w = caveats[0]
    assert "BnB beats its own base" in w and "n=2: +6.0" in w and "n=1" not in w
    assert "1 replicate, so no interval: more than 3.4 points" in w
    assert "reached a plateau" in w and "raise train.epochs" not in w


def test_an_under_trained_source_base_is_a_caveat_too(tmp_path):
    """directions=[B]: baseA is no one's own base, but every AnB copies from it."""
    root = tmp_path / "r"
    write_record(root, Cell("base", "A", 0, "random", 0, 0), [0.3, 0.5, 0.6, 0.7])   # still rising
    write_record(root, Cell("base", "B", 0, "random", 0, 0), [0.8] * 4)
    write_record(root, Cell("transfer", "B", 1, "random", 0, 0), [0.7] * 4)
    caveats = analysis.caveats(analysis.load(root))
    assert len(caveats) == 1 and caveats[0].startswith("1 of 2 base network(s) had not reached a plateau")
    assert "(baseA, split seed 0, seed 0" in caveats[0]

"""Results aggregation: hand-written records with known numbers in, known statistics out."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from record_fixtures import BASE, P1, P1_HISTORY, gates, masks, record, row, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.grid.spec import load_grid
from attnplace.report.build import build_report, caveats, write_report
from attnplace.report.plots import plot_accuracy, plot_pairs
from attnplace.report.records import load_records
from attnplace.report.summary import summarize
from attnplace.report.tables import format_markdown, format_summary
from attnplace.report.trajectories import gate_trajectories, mask_trajectories

T975_DF2 = 4.302653  # t_{0.975, 2} from a table: the 95% CI multiplier for n = 3
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_results.ipynb"


def welch_by_hand(a, b):
    """Welch's t-test from its textbook formula (t statistic and Welch–Satterthwaite df)."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


# ---------------------------------------------------------------- caveats


def test_summary_says_which_weights_were_tested(tmp_path):
    recs = [record(p, s, 0.9) for p in ("none", "p1") for s in range(3)]
    for rec in recs:
        rec["config"]["trainer"] = {"test_on": "best_val"}
        rec["metrics"]["tested_epoch"] = 7
    write_runs(tmp_path, recs)
    report = write_report(tmp_path)
    assert set(report.summary["test_on"]) == {"best_val"}
    assert report.caveats == ["Test accuracy is measured on the weights of the epoch with the best validation "
                              "accuracy (epoch 7, counted from 0)."]
    assert pd.read_csv(tmp_path / "summary.csv")["test_on"].tolist() == ["best_val", "best_val"]


def sessions(*hashes):
    return {"sessions": [{"code": {"source_sha256": h, "git": None}} for h in hashes]}


def test_summary_says_which_code_trained_the_runs(tmp_path):
    one = [record(p, s, 0.9, **sessions("aaa")) for p in ("none", "p1") for s in range(3)]
    assert caveats(*_summary_and_runs(write_runs(tmp_path / "one", one)))[-1] == \
        "All runs trained under one code version (source sha256 aaa)."
    mixed = one[:4] + [record("p1", 1, 0.9, **sessions("aaa", "bbb")), record("p1", 2, 0.9)]
    assert caveats(*_summary_and_runs(write_runs(tmp_path / "mixed", mixed)))[-1] == \
        "Runs trained under 3 code versions (source sha256 per run; a+b: resumed under b): " \
        "aaa: 4, aaa+bbb: 1, not recorded: 1."
    untold = [record(p, s, 0.9) for p in ("none", "p1") for s in range(3)]
    assert not any("code" in line for line in caveats(*_summary_and_runs(write_runs(tmp_path / "old", untold))))


def _summary_and_runs(folder):
    runs = load_records(folder)[0]
    return summarize(runs), runs


def test_gate_lr_scale_variants_share_one_baseline(tmp_path):
    axes = ("model.pattern", "optim.gate_lr_scale", "seed")
    recs = []
    for pattern, scale, accs in (("none", 1, [0.80, 0.82]), ("p3c", 1, [0.81, 0.83]), ("p3c", 10, [0.84, 0.85])):
        for seed, acc in enumerate(accs):
            rec = record(pattern, seed, acc, axes=("model.pattern", "seed"))
            rec["axes"]["optim.gate_lr_scale"] = scale
            rec["config"]["optim"] = {"gate_lr_scale": scale}
            rec["id"] += f"-g{scale}"
            recs.append(rec)
    write_runs(tmp_path, recs, {a: [] for a in axes})
    summary = summarize(load_records(tmp_path)[0]).set_index("variant")
    assert list(summary.index) == ["none", "p3c/gate_lr_scale=1", "p3c/gate_lr_scale=10"]
    assert summary.loc["p3c/gate_lr_scale=10", "diff"] == pytest.approx(0.035)
    assert summary.loc["p3c/gate_lr_scale=1", "n_pairs"] == 2


def _scaled(scales, listed):
    """p3c runs at each gate lr scale (recorded as floats, as the config holds them) beside `none`."""
    recs = [record("none", s, 0.8, axes=("model.pattern", "seed")) for s in range(2)]
    for scale in scales:
        for seed in range(2):
            rec = record("p3c", seed, 0.8 + scale / 1e4, axes=("model.pattern", "seed"))
            rec["axes"]["optim.gate_lr_scale"] = float(scale)
            rec["config"]["optim"] = {"gate_lr_scale": float(scale)}
            rec["id"] += f"-g{scale}"
            recs.append(rec)
    return recs, {"seed": [0, 1], "model.pattern": ["none", "p3c"], "optim.gate_lr_scale": listed}


@pytest.mark.parametrize("listed, order", [([1, 10, 100], [1, 10, 100]), ([100, 1, 10], [100, 1, 10]),
                                           ([], [1, 10, 100])])
def test_variants_follow_the_grid_order_of_axis_values_numbers_as_numbers(tmp_path, listed, order):
    """The grid's order of values, else numeric order: never text order (1, 100, 10)."""
    recs, axes = _scaled([100, 10, 1], listed)
    summary = summarize(load_records(write_runs(tmp_path, recs, axes))[0])
    assert list(summary["variant"]) == ["none", *(f"p3c/gate_lr_scale={s}" for s in order)]


# ---------------------------------------------------------------- statistics


def test_summary_statistics_match_hand_computation(results):
    summary = summarize(load_records(results)[0])
    assert list(summary["variant"]) == ["none", "p1/se", "p2/se", "p3/se", "p4/se"]  # the grid's order

    p1 = row(summary, "p1/se")
    half = T975_DF2 * 0.02 / math.sqrt(3)
    assert (p1["n"], p1["failures"]) == (3, 0)
    assert p1["acc_mean"] == pytest.approx(0.92)
    assert p1["acc_std"] == pytest.approx(0.02)
    assert (p1["ci_low"], p1["ci_high"]) == pytest.approx((0.92 - half, 0.92 + half), abs=1e-6)
    assert p1["diff"] == pytest.approx(0.92 - np.mean(BASE))
    assert (p1["params"], p1["flops"], p1["train_images_per_s"]) == pytest.approx((1001, 2e6, 500))

    # Paired by seed: differences [0, .01, .01] -> t = mean / (sd / sqrt(3)) = 2 on 2 df.
    d = np.subtract(P1, BASE)
    t = d.mean() / (math.sqrt(((d - d.mean()) ** 2).sum() / 2) / math.sqrt(3))
    assert t == pytest.approx(2.0)
    assert p1["test"] == "paired"
    assert p1["p_value"] == pytest.approx(2 * stats.t.sf(t, 2))


def test_failed_runs_are_counted_not_averaged_and_pairs_use_the_shared_seeds(results):
    summary = summarize(load_records(results)[0])
    p2 = row(summary, "p2/se")
    assert (p2["n"], p2["failures"]) == (2, 1)
    assert p2["acc_mean"] == pytest.approx(0.94)
    # Seed 2 failed: paired on the two seeds both sides completed, d = [.05, .02].
    assert (p2["test"], p2["n_pairs"]) == ("paired", 2)
    assert p2["diff"] == pytest.approx(0.035)
    sd = math.sqrt(2 * 0.015**2)
    assert p2["p_value"] == pytest.approx(2 * stats.t.sf(0.035 / (sd / math.sqrt(2)), 1))
    assert (p2["effect"], p2["effect_kind"]) == (pytest.approx(0.035 / sd), "d_z")

    p3, p4, base = row(summary, "p3/se"), row(summary, "p4/se"), row(summary, "none")
    assert (p3["n"], p3["failures"], p3["test"]) == (1, 0, "")  # the running run counts nowhere
    assert math.isnan(p3["acc_std"]) and math.isnan(p3["ci_low"]) and math.isnan(p3["p_value"])
    assert (p4["n"], p4["failures"]) == (0, 1) and math.isnan(p4["acc_mean"])
    assert base["baseline"] and base["diff"] == 0 and math.isnan(base["p_value"]) and base["test"] == ""


def test_no_shared_seeds_falls_back_to_welch_with_hedges_g(tmp_path):
    recs = [record("none", s, a) for s, a in enumerate(BASE)] + [record("p1", 3, 0.95), record("p1", 4, 0.97)]
    p1 = row(summarize(load_records(write_runs(tmp_path, recs))[0]), "p1/se")
    assert (p1["test"], p1["n_pairs"]) == ("welch", 0)
    assert p1["p_value"] == pytest.approx(welch_by_hand([0.95, 0.97], BASE))
    pooled = math.sqrt((np.var([0.95, 0.97], ddof=1) + 2 * np.var(BASE, ddof=1)) / 3)
    assert p1["effect"] == pytest.approx((1 - 3 / 11) * (0.96 - np.mean(BASE)) / pooled)
    assert p1["effect_kind"] == "g"  # Hedges' g, named for what it is
    assert math.isnan(p1["detectable_diff"])  # power is the paired design's: no pairs, no figure
    runs = load_records(tmp_path)[0]
    assert "Compared unpaired (Welch" in " ".join(caveats(summarize(runs), runs))


def test_holm_corrects_within_each_baseline_family(tmp_path):
    """Three variants against one baseline: Holm multiplies the smallest p by 3, the next by 2, ..."""
    accs = {"none": [0.80, 0.81, 0.79, 0.80], "p1": [0.83, 0.85, 0.82, 0.84],
            "p2": [0.81, 0.81, 0.80, 0.82], "p3": [0.80, 0.82, 0.79, 0.81]}
    recs = [record(p, s, a) for p, values in accs.items() for s, a in enumerate(values)]
    summary = summarize(load_records(write_runs(tmp_path, recs))[0]).set_index("variant")
    raw = {v: stats.ttest_rel(accs[v.split("/")[0]], accs["none"]).pvalue for v in ("p1/se", "p2/se", "p3/se")}
    assert {v: summary.loc[v, "p_value"] for v in raw} == pytest.approx(raw)
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, v in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[v]))
        expected[v] = running
    assert {v: summary.loc[v, "p_holm"] for v in raw} == pytest.approx(expected)
    assert summary.loc["p1/se", "p_holm"] == pytest.approx(3 * raw["p1/se"])
    assert math.isnan(summary.loc["none", "p_holm"])
    # The Δ CI is the paired one: mean(d) ± t_{.975,3}·sd(d)/2.
    d = np.subtract(accs["p1"], accs["none"])
    half = 3.182446 * d.std(ddof=1) / 2
    assert (summary.loc["p1/se", "diff_ci_low"], summary.loc["p1/se", "diff_ci_high"]) == \
        pytest.approx((d.mean() - half, d.mean() + half), rel=1e-5)


def test_baseline_matches_non_placement_axes_and_pools_attention(tmp_path):
    """Each backbone has its own baseline; `none` runs differing only in attention are one baseline."""
    axes = ("model.backbone", "model.pattern", "model.attention", "seed")
    recs = [record("none", 0, 0.80, axes=axes), record("none", 1, 0.82, attention="cbam", axes=axes),
            record("p1", 0, 0.85, axes=axes), record("p1", 1, 0.88, axes=axes),
            record("none", 0, 0.60, backbone="resnet56", axes=axes),
            record("p1", 0, 0.70, backbone="resnet56", axes=axes)]
    summary = summarize(load_records(write_runs(tmp_path, recs))[0])
    assert list(summary["variant"]) == ["resnet20/none", "resnet20/p1/se", "resnet56/none", "resnet56/p1/se"]
    assert row(summary, "resnet20/none")["n"] == 2
    assert pd.isna(row(summary, "resnet20/none")["model.attention"])
    p1 = row(summary, "resnet20/p1/se")
    assert p1["diff"] == pytest.approx(0.865 - 0.81)
    assert p1["test"] == "paired"  # seeds {0, 1} on both sides, although the baseline mixes attentions
    assert p1["p_value"] == pytest.approx(2 * stats.t.sf(0.055 / (math.sqrt(0.00005) / math.sqrt(2)), 1))
    assert row(summary, "resnet56/p1/se")["diff"] == pytest.approx(0.10)


def test_other_axes_split_groups_and_label_variants(tmp_path):
    """optim.lr is not a placement choice, so each lr has its own baseline; list values are hashable."""
    recs = []
    for lr, gain in ((0.1, 0.02), (0.05, 0.05)):
        for pattern, seed in [("none", 0), ("none", 1), ("p1", 0), ("p1", 1)]:
            rec = record(pattern, seed, 0.8 + 0.01 * seed + (gain if pattern == "p1" else 0), axes=())
            rec["id"] += f"-lr{lr}"
            rec["axes"] = {"optim.lr": lr, "model.pattern": pattern, "model.stages": [2, 3], "seed": seed}
            recs.append(rec)
    summary = summarize(load_records(write_runs(tmp_path, recs))[0])
    assert list(summary["variant"]) == ["lr=0.05/none", "lr=0.05/p1/stages=[2, 3]",
                                        "lr=0.1/none", "lr=0.1/p1/stages=[2, 3]"]
    assert summary["diff"].tolist() == pytest.approx([0, 0.05, 0, 0.02])


def test_format_summary_shows_percent_ci_delta_and_p(results):
    summary = summarize(load_records(results)[0])
    text = format_summary(summary)
    p1_line = next(line for line in text.splitlines() if line.startswith("p1/se"))
    half = 100 * T975_DF2 * 0.02 / math.sqrt(3)
    assert "92.00 ± 2.00" in p1_line
    assert f"[{92 - half:.2f}, {92 + half:.2f}]" in p1_line
    assert "+0.67" in p1_line and "(paired)" in p1_line
    assert "baseline" in next(line for line in text.splitlines() if line.startswith("none"))


def test_displayed_accuracy_cis_are_clipped_to_0_100(tmp_path):
    recs = [record("none", 0, 0.95), record("none", 1, 0.15), record("p1", 0, 0.95), record("p1", 1, 0.96)]
    summary = summarize(load_records(write_runs(tmp_path, recs))[0])
    base = row(summary, "none")  # n = 2, t = 12.7: the raw interval passes both bounds
    assert base["ci_low"] < 0 and base["ci_high"] > 1
    base_line = next(line for line in format_markdown(summary).splitlines() if line.startswith("| none |"))
    assert ", 100.00]" in base_line and "[0.00," in base_line
    notes = caveats(summary, load_records(tmp_path)[0])
    assert any(n.startswith("warning: n < 3 for none, p1/se") for n in notes)


# ---------------------------------------------------------------- gates


def test_gate_trajectories_long_form_and_means(results):
    long, mean = gate_trajectories(results)
    # Two completed p1 runs x 2 epochs x 3 gates, minus one null value; the failed p2 run is left out.
    assert len(long) == 11
    assert set(long["run"]) == {"resnet20-p1-se-s0", "resnet20-p1-se-s1"}
    first = long[(long["run"] == "resnet20-p1-se-s0") & (long["gate"] == "stage2.block1.gamma_s")]
    assert first[["variant", "seed", "stage", "block", "kind"]].iloc[0].tolist() == \
        ["p1/se", 0, "stage2", "block1", "gamma_s"]
    assert first["value"].tolist() == [0.3, 0.4] and first["epoch"].tolist() == [1, 2]  # epochs trained

    # Blocks averaged within a run (seed 0: .2, .3; seed 1: .4, .5), then mean/std over seeds.
    gs = mean[(mean["stage"] == "stage2") & (mean["kind"] == "gamma_s")].set_index("epoch")
    assert gs["mean"].tolist() == pytest.approx([0.3, 0.4])
    assert gs["std"].tolist() == pytest.approx([math.sqrt(0.02)] * 2)
    assert gs["n"].tolist() == [2, 2]
    lam = mean[mean["kind"] == "lambda"].set_index("epoch")
    assert lam["mean"].tolist() == pytest.approx([0.6, 0.6]) and lam["n"].tolist() == [2, 1]


def test_gate_curves_start_at_the_initial_value():
    rec = record("p4", 0, 0.9, history=[{"epoch": 0, "gates": gates(0.05, 0.07, 0.2)}],
                 initial_gates=gates(0.0, 0.0, 0.1))
    long, mean = gate_trajectories([rec])
    gs = mean[mean["kind"] == "gamma_s"].set_index("epoch")["mean"]
    assert gs.to_dict() == pytest.approx({0: 0.0, 1: 0.06})
    assert mean[mean["kind"] == "lambda"].set_index("epoch")["mean"].to_dict() == pytest.approx({0: 0.1, 1: 0.2})


def test_gate_trajectories_accepts_record_dicts():
    recs = [record("p1", 0, 0.9, history=P1_HISTORY[0]), {"id": "broken"}]
    long, mean = gate_trajectories(recs)
    assert len(long) == 6 and set(long["variant"]) == {"p1/se"}
    assert set(mean["kind"]) == {"gamma_s", "lambda"}


# ---------------------------------------------------------------- written report


def test_write_report_writes_every_file(results):
    report = write_report(results)
    names = {"summary.csv", "summary.md", "summary.tex", "pairs.csv", "gates.csv", "gates_mean.csv", "accuracy.png",
             "pairs.png", "gates.png"}
    assert {p.name for p in report.written} == names
    for name in names:
        assert (results / name).stat().st_size > 0
    for name in ("accuracy.png", "pairs.png", "gates.png"):
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(results.glob(".*.tmp"))

    csv = pd.read_csv(results / "summary.csv").set_index("variant")
    assert {"n", "acc_mean", "acc_std", "ci_low", "ci_high", "diff", "p_value", "diff_ci_low", "diff_ci_high",
            "n_pairs", "p_holm", "effect", "effect_kind", "test_on", "metric", "epoch", "tost_p", "verdict",
            "detectable_diff", "seeds_for_margin", "mean_rank", "wins"} <= set(csv.columns)
    assert set(csv["metric"]) == {"test_acc"}
    assert csv.loc["p1/se", "acc_mean"] == pytest.approx(0.92)
    assert (csv.loc["p2/se", "n"], csv.loc["p2/se", "failures"]) == (2, 1)
    assert csv.loc["p1/se", "p_value"] == pytest.approx(report.summary.set_index("variant").loc["p1/se", "p_value"])
    assert len(pd.read_csv(results / "gates.csv")) == 11
    assert len(pd.read_csv(results / "gates_mean.csv")) == len(report.gates_mean)

    md = (results / "summary.md").read_text()
    for variant in ["none", "p1/se", "p2/se", "p3/se", "p4/se"]:
        assert f"| {variant} |" in md
    assert "partial" in md and "corrupt" in md  # skipped records are listed
    assert r"\begin{tabular}" in (results / "summary.tex").read_text()
    assert len(report.problems) == 2


def test_accuracy_plot_shows_every_seed(results):
    runs = load_records(results)[0]
    fig = plot_accuracy(summarize(runs), runs)
    xs = sorted(float(x) for c in fig.axes[0].collections if c.get_gid() == "seeds" for x, _ in c.get_offsets())
    completed = sorted(100 * runs.loc[runs["status"] == "completed", "test_acc"])
    assert xs == pytest.approx(completed)  # one dot per completed run (9), at its accuracy


def test_write_report_without_gates_skips_gates_plot(tmp_path):
    write_runs(tmp_path, [record("none", 0, 0.9), record("p1", 0, 0.91)])
    report = write_report(tmp_path)
    assert not (tmp_path / "gates.png").exists() and (tmp_path / "accuracy.png").exists()
    assert report.gates.empty and list(pd.read_csv(tmp_path / "gates.csv").columns)[:2] == ["run", "variant"]


# ---------------------------------------------------------------- every variant against every other

ACCS = {"none": [0.80, 0.81, 0.79, 0.80], "p1": [0.83, 0.85, 0.82, 0.84],
        "p2": [0.81, 0.81, 0.80, 0.82], "p3": [0.80, 0.82, 0.79, 0.81]}


def _four_variants(root: Path) -> Path:
    return write_runs(root, [record(p, s, a) for p, values in ACCS.items() for s, a in enumerate(values)],
                      {"model.pattern": list(ACCS), "model.attention": ["se"], "seed": [0, 1, 2, 3]})


def test_pairs_csv_holds_every_pair_with_holm_over_all_six(tmp_path):
    report = write_report(_four_variants(tmp_path))
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert list(pairs.columns[:5]) == ["group", "a", "b", "diff", "diff_ci_low"]
    assert {"n_pairs", "p_value", "p_holm", "effect", "effect_kind", "tost_p", "verdict", "detectable_diff",
            "seeds_for_margin", "metric"} <= set(pairs.columns)
    assert len(pairs) == 6 and set(pairs["metric"]) == {"test_acc"} and set(pairs["n_pairs"]) == {4}
    names = {p: f"{p}/se" if p != "none" else p for p in ACCS}
    raw = {(names[a], names[b]): stats.ttest_rel(ACCS[a], ACCS[b]).pvalue
           for i, a in enumerate(ACCS) for b in list(ACCS)[:i]}
    got = pairs.set_index(["a", "b"])
    assert got["p_value"].to_dict() == pytest.approx(raw)
    expected, running = {}, 0.0
    for rank, pair in enumerate(sorted(raw, key=raw.get)):  # Holm by hand over m = 6 pairs
        running = max(running, min(1.0, (6 - rank) * raw[pair]))
        expected[pair] = running
    assert got["p_holm"].to_dict() == pytest.approx(expected)
    p1_p2 = got.loc[("p2/se", "p1/se")]  # Δ = a − b = p2 − p1, paired over 4 seeds
    d = np.subtract(ACCS["p2"], ACCS["p1"])
    assert p1_p2["diff"] == pytest.approx(d.mean()) and p1_p2["effect"] == pytest.approx(d.mean() / d.std(ddof=1))
    # The baseline family in summary.csv is Holm over the 3 comparisons with none, not over the 6 pairs.
    summary = report.summary.set_index("variant")
    assert summary.loc["p1/se", "p_value"] == pytest.approx(got.loc[("p1/se", "none"), "p_value"])
    assert summary.loc["p1/se", "p_holm"] < got.loc[("p1/se", "none"), "p_holm"]


def test_summary_md_has_the_omnibus_tests_ranks_and_the_pairs_matrix(tmp_path):
    report = write_report(_four_variants(tmp_path))
    md = (tmp_path / "summary.md").read_text()
    chi2 = stats.friedmanchisquare(*ACCS.values()).statistic
    assert f"Friedman χ²(3) = {chi2:.2f}" in md and "repeated-measures ANOVA F(3, 9)" in md
    assert "| 1 none |" in md and "| 2 p1/se |" in md  # the matrix: rows numbered like its columns
    p1 = row(report.summary, "p1/se")
    assert p1["mean_rank"] == 1 and p1["wins"] == 4  # p1 is best on every seed
    # none ties for last with p3 on seeds 0 and 2 and with p2 on seed 1 (rank 3.5 each), and is last on seed 3
    assert row(report.summary, "none")["mean_rank"] == pytest.approx((3.5 + 3.5 + 3.5 + 4) / 4)
    assert row(report.summary, "none")["wins"] == 0


def test_pairs_plot_marks_the_holm_significant_cells(tmp_path):
    report = write_report(_four_variants(tmp_path))
    fig = plot_pairs(report.pairs, report.summary)
    boxed = [p for p in fig.axes[0].patches if p.get_gid() == "significant"]
    assert len(boxed) == 2 * int((report.pairs["verdict"] == "different").sum()) > 0
    texts = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "pair"]
    assert len(texts) == 12 and f"{100 * report.pairs['diff'].iloc[0]:+.2f}" in texts


# ---------------------------------------------------------------- baseline, metric, margin


def test_baseline_flag_compares_every_variant_with_the_one_named(tmp_path):
    report = write_report(_four_variants(tmp_path), baseline="p1/se")
    summary = report.summary.set_index("variant")
    assert list(summary.index) == ["p1/se", "none", "p2/se", "p3/se"] and summary.loc["p1/se", "baseline"]
    d = np.subtract(ACCS["none"], ACCS["p1"])
    assert summary.loc["none", "diff"] == pytest.approx(d.mean()) and not summary.loc["none", "baseline"]
    with pytest.raises(UserError) as err:
        write_report(tmp_path, baseline="p9/se")
    assert str(err.value) == "baseline 'p9/se' is not a variant of this report; valid: none, p1/se, p2/se, p3/se"


def test_a_placement_baseline_applies_in_every_group(tmp_path):
    axes = ("model.backbone", "model.pattern", "model.attention", "seed")
    recs = [record(p, s, 0.8 + 0.01 * s + (0.02 if p == "p1" else 0), backbone=b, axes=axes)
            for b in ("resnet20", "resnet56") for p in ("none", "p1", "p2") for s in (0, 1)]
    summary = write_report(write_runs(tmp_path, recs), baseline="p1/se").summary
    assert summary.loc[summary["baseline"], "variant"].tolist() == ["resnet20/p1/se", "resnet56/p1/se"]
    assert summary.set_index("variant").loc["resnet56/none", "diff"] == pytest.approx(-0.02)


def test_val_acc_is_read_at_the_final_epoch(tmp_path):
    history = [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    recs = [record(p, s, 0.9, val_acc=v, history=history) for p, vals in (("none", [0.7, 0.72]), ("p1", [0.75, 0.76]))
            for s, v in enumerate(vals)]
    report = write_report(write_runs(tmp_path, recs), metric="val_acc")
    p1 = row(report.summary, "p1/se")
    assert (p1["metric"], p1["epoch"], p1["acc_mean"], p1["diff"]) == ("val_acc", "2", 0.755, pytest.approx(0.045))
    assert report.caveats[0].startswith("The metric is val_acc: the validation accuracy after each run's final "
                                        "epoch (epoch 2, counted from 0)")
    md = (tmp_path / "summary.md").read_text()
    assert "| val acc % |" in md and "`val_acc` over completed runs" in md
    with pytest.raises(UserError, match="equivalence_margin=-1.0 is invalid"):
        write_report(tmp_path, equivalence_margin=-1.0)


def test_a_grid_report_section_sets_the_baseline_and_metric(tmp_path, capsys):
    """The grid file's `report:` travels in grid.json; `attnplace report` reads it, and its flags override it."""
    spec = {"name": "g", "base": {"data": {"name": "synthetic", "path": None}},
            "axes": {"model.pattern": ["none", "p1"]},
            "report": {"baseline": "p1/se", "metric": "val_acc", "equivalence_margin": 1.0}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(spec))
    grid = load_grid(tmp_path / "g.yaml")
    assert grid.describe()["report"] == spec["report"]
    recs = [record(p, s, 0.9, val_acc=0.7 + 0.01 * s + (0.02 + 0.005 * s if p == "p1" else 0))
            for p in ("none", "p1") for s in (0, 1)]
    folder = write_runs(tmp_path / "out", recs)
    (folder / "grid.json").write_text(json.dumps({**grid.describe(), "runs": None}))
    report = write_report(folder)
    assert report.settings.baseline == "p1/se" and report.summary["variant"].iloc[0] == "p1/se"
    assert row(report.summary, "none")["diff"] == pytest.approx(-0.0225)  # val_acc, not test_acc (equal everywhere)
    assert set(report.pairs["verdict"]) <= {"different", "equivalent within ±1 pp", "inconclusive"}
    assert main(["report", str(folder), "--metric", "test_acc", "--baseline", "none"]) == 0
    out = capsys.readouterr().out
    assert "test acc %" in out and "baseline" in next(line for line in out.splitlines() if line.startswith("none"))


@pytest.mark.parametrize("section, message", [
    ({"baseline": "p1", "metrc": "val_acc"}, "unknown key 'report.metrc'; valid: report.baseline, report.metric, "
                                             "report.equivalence_margin, report.within, report.factorial"),
    ({"metric": "best_val_acc"}, "report.metric='best_val_acc' is invalid; valid: test_acc, val_acc"),
    ({"equivalence_margin": "wide"}, "report.equivalence_margin: expected float, got 'wide'"),
])
def test_a_bad_report_section_stops_the_grid_in_one_line(tmp_path, section, message):
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"axes": {"model.pattern": ["none"]}, "report": section}))
    with pytest.raises(UserError) as err:
        load_grid(tmp_path / "g.yaml")
    assert str(err.value) == f"{tmp_path / 'g.yaml'}: {message}"


GATED = {("none", None): [0.80, 0.81, 0.79, 0.80], ("p1", "mask"): [0.78, 0.80, 0.77, 0.79],
         ("p2", "mask"): [0.70, 0.74, 0.69, 0.72], ("p1", "near_identity"): [0.81, 0.80, 0.80, 0.82],
         ("p2", "near_identity"): [0.80, 0.82, 0.80, 0.81]}


def gated_runs(tmp_path, leave_out=()):
    """A results folder of GATED's runs, 4 seeds each, but the (pattern, gate) variants in `leave_out`."""
    recs = []
    for (pattern, gate), accs in GATED.items():
        for seed, acc in enumerate(accs):
            rec = record(pattern, seed, acc, axes=("model.pattern", "seed"))
            if gate:
                rec["axes"]["model.gate"], rec["config"]["model"]["gate"] = gate, gate
                rec["id"] += f"-{gate}"
            if (pattern, gate) not in leave_out:
                recs.append(rec)
    return write_runs(tmp_path, recs, {"seed": [0, 1, 2, 3], "model.pattern": ["none", "p1", "p2"],
                                       "model.gate": ["mask", "near_identity"]})


def test_within_runs_the_omnibus_test_again_for_each_gate_form(tmp_path, capsys):
    folder = gated_runs(tmp_path)
    report = write_report(folder, within=("model.gate",))
    got = report.omnibus.set_index("within")
    assert list(got.index) == ["", "model.gate=mask", "model.gate=near_identity"]
    assert got.loc["", "k"] == 5
    for gate in ("mask", "near_identity"):  # each form's variants with the shared baseline
        chosen = [GATED["none", None], GATED["p1", gate], GATED["p2", gate]]
        assert got.loc[f"model.gate={gate}", "k"] == 3
        assert got.loc[f"model.gate={gate}", "friedman_chi2"] == pytest.approx(stats.friedmanchisquare(*chosen).statistic)
    assert "model.gate=mask: do the 3 variants differ" in (folder / "summary.md").read_text()
    with pytest.raises(UserError, match="report.within: 'model.attention' is not a placement axis of this report; "
                                        "valid: model.pattern, model.gate"):
        build_report(folder, within=("model.attention",))
    assert main(["report", str(folder), "--within", "model.gate"]) == 0
    assert "model.gate=near_identity: do the 3 variants differ" in capsys.readouterr().out


def test_factorial_separates_the_placement_from_the_gate_form(tmp_path, capsys):
    folder = gated_runs(tmp_path)
    report = write_report(folder, factorial=("model.pattern", "model.gate"))
    got = pd.read_csv(folder / "factorial.csv").set_index("effect")
    assert list(got.index) == ["model.pattern", "model.gate", "model.pattern × model.gate"]
    assert got["k"].eq(4).all() and got["n_seeds"].eq(4).all() and got["metric"].eq("test_acc").all()
    # A 2 × 2 by hand: each effect is a paired t-test, F = t² (the baseline `none` is no cell).
    cells = {key: np.array(accs) for key, accs in GATED.items() if key[1]}
    mask = (cells["p1", "mask"] + cells["p2", "mask"]) / 2
    near = (cells["p1", "near_identity"] + cells["p2", "near_identity"]) / 2
    p1 = (cells["p1", "mask"] + cells["p1", "near_identity"]) / 2
    p2 = (cells["p2", "mask"] + cells["p2", "near_identity"]) / 2
    both = (cells["p1", "mask"] - cells["p1", "near_identity"]) - (cells["p2", "mask"] - cells["p2", "near_identity"])
    for effect, t in (("model.gate", stats.ttest_rel(near, mask)), ("model.pattern", stats.ttest_rel(p1, p2)),
                      ("model.pattern × model.gate", stats.ttest_1samp(both, 0))):
        assert (got.loc[effect, "anova_f"], got.loc[effect, "anova_p"]) == \
            (pytest.approx(t.statistic**2), pytest.approx(t.pvalue)), effect
    text = (folder / "summary.md").read_text()
    assert "## model.pattern × model.gate (factorial.csv, factorial.png)" in text
    assert f"  - main effect of model.gate: F(1, 3) = {got.loc['model.gate', 'anova_f']:.2f}" in text
    assert (folder / "factorial.png").read_bytes().startswith(b"\x89PNG") and len(report.factorial) == 3
    assert main(["report", str(folder), "--factorial", "model.pattern", "--factorial", "model.gate"]) == 0
    assert "interaction model.pattern × model.gate: F(1, 3)" in capsys.readouterr().out


def test_factorial_axes_must_be_placement_axes_that_cross(tmp_path):
    folder = gated_runs(tmp_path, leave_out=[("p2", "near_identity")])
    with pytest.raises(UserError, match="report.factorial: model.pattern × model.gate do not cross in this grid: "
                                        "no variant has p2/near_identity; valid: axes whose every combination was run"):
        build_report(folder, factorial=("model.pattern", "model.gate"))
    with pytest.raises(UserError, match="report.factorial: 'model.attention' is not a placement axis of this report"):
        build_report(folder, factorial=("model.pattern", "model.attention"))
    with pytest.raises(UserError, match="report.factorial: p1/gate=mask, p1/gate=near_identity share their "
                                        "model.pattern values"):
        build_report(folder, factorial=("model.pattern",))
    assert build_report(folder).factorial.empty and not (folder / "factorial.csv").exists()


def test_committed_grid_files_say_how_their_tables_read():
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    for name in ("gate_init", "gate_lr_cpu", "stage_placement"):
        assert yaml.safe_load((experiments / f"{name}.yaml").read_text())["report"]["metric"] == "val_acc", name
    assert yaml.safe_load((experiments / "gate_lr_cpu.yaml").read_text())["report"]["baseline"] == \
        "p3c/gate_lr_scale=1"
    where_and_how = load_grid(experiments / "where_and_how_cpu.yaml")  # its report section is valid, too
    assert yaml.safe_load((experiments / "where_and_how_cpu.yaml").read_text())["report"] == \
        {"within": ["model.gate"], "factorial": ["model.pattern", "model.gate"]} and len(where_and_how.runs) == 45


# ---------------------------------------------------------------- masks


def _masked(root: Path) -> Path:
    recs = [record("none", s, 0.8) for s in (0, 1)]
    for seed, (mean, gain) in enumerate(((0.5, 0.9), (0.7, 1.1))):
        history = [{"epoch": 0, "masks": masks(mean - 0.1, gain)}, {"epoch": 1, "masks": masks(mean, gain)}]
        recs.append(record("p1", seed, 0.82, history=history))
    history = [{"epoch": 0, "masks": {**masks(0.3, 1.0, "attn_s"), **masks(0.6, 0.8, "attn_r")}}]
    recs.append(record("p4", 0, 0.81, history=history))
    return write_runs(root, recs)


def test_masks_csv_long_form_and_per_stage_means(tmp_path):
    report = write_report(_masked(tmp_path))
    long = pd.read_csv(tmp_path / "masks.csv")
    assert list(long.columns) == ["run", "variant", "seed", "epoch", "stage", "block", "module", "stat", "value"]
    assert len(long) == 2 * 2 * 2 * 3 + 2 * 2 * 3  # p1: 2 seeds x 2 epochs x 2 blocks x 3 stats; p4: 2 modules
    first = long[(long["run"] == "resnet20-p1-se-s0") & (long["stat"] == "channel_mean")]
    assert first[["stage", "block", "module"]].drop_duplicates().values.tolist() == \
        [["stage2", "block0", "attn"], ["stage2", "block1", "attn"]]
    assert sorted(set(first["epoch"])) == [1, 2]  # epochs trained, as in gates.csv
    mean = report.masks_mean.set_index(["variant", "module", "stat", "epoch"])["mean"]
    assert mean[("p1/se", "attn", "channel_mean", 2)] == pytest.approx(0.6)  # seeds 0.5 and 0.7
    assert mean[("p1/se", "attn", "gain", 2)] == pytest.approx(1.0)
    assert mean[("p4/se", "attn_r", "gain", 1)] == pytest.approx(0.8)
    assert (tmp_path / "masks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mask_trajectories(tmp_path)[0].equals(report.masks)


def test_records_without_masks_write_no_mask_files(results):
    report = write_report(results)
    assert report.masks.empty and not (results / "masks.csv").exists() and not (results / "masks.png").exists()


# ---------------------------------------------------------------- notebook


def test_results_notebook_runs_headless(results, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ATTNPLACE_RESULTS", str(results))  # the kernel inherits this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    committed = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("image/png" in o.get("data", {}) for o in committed) and NOTEBOOK.stat().st_size < 1_000_000
    for cell in nb.cells:  # executed from scratch against the fixture below
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)

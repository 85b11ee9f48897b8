"""Report tables: hand-written records with known numbers in, known statistics out (summary, caveats)."""

import math

import numpy as np
import pandas as pd
import pytest
from record_fixtures import BASE, P1, record, row, write_runs
from scipy import stats

from attnplace.report.build import caveats, write_report
from attnplace.report.records import load_records
from attnplace.report.summary import summarize
from attnplace.report.tables import format_markdown, format_summary

T975_DF2 = 4.302653  # t_{0.975, 2} from a table: the 95% CI multiplier for n = 3


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


def test_summary_names_a_completed_run_that_did_not_learn(tmp_path):
    """A loss that hardly fell (2.30 -> 2.29, as a run whose masks shut) is named; one that fell (2.0 -> 0.9) or
    a failed run is not."""
    def losses(*values):
        return [{"epoch": e, "train_loss": v} for e, v in enumerate(values)]

    recs = [record("none", s, 0.9, history=losses(2.0, 1.2, 0.9)) for s in range(2)]
    recs += [record("p2", 0, 0.14, history=losses(2.3053, 2.3, 2.2929)), record("p2", 1, 0.6, history=losses(2.0, 1.5)),
             record("p3", 0, None, status="failed", history=losses(2.3, 2.3))]
    write_runs(tmp_path, recs)
    assert "warning: 1 completed run(s) did not learn: resnet20-p2-se-s0 (training loss 2.31 after the first " \
           "epoch, 2.29 after the last). Each stays in its variant's mean and SD." in write_report(tmp_path).caveats


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
    assert (p3["n"], p3["failures"], p3["test"]) == (1, 2, "")  # the running run (seed 3) counts nowhere
    assert math.isnan(p3["acc_std"]) and math.isnan(p3["ci_low"]) and math.isnan(p3["p_value"])
    assert (p4["n"], p4["failures"]) == (0, 3) and math.isnan(p4["acc_mean"])
    assert base["baseline"] and base["diff"] == 0 and math.isnan(base["p_value"]) and base["test"] == ""


def test_no_shared_seeds_falls_back_to_welch_with_hedges_g(tmp_path):
    """Every block is complete, but p1 diverged on seeds 0-2 and the baseline on seeds 3-4: no seed to pair on."""
    recs = [record("none", s, a) for s, a in enumerate(BASE)] + [record("p1", 3, 0.95), record("p1", 4, 0.97)]
    recs += [record("p1", s, None, status="failed") for s in range(3)]
    recs += [record("none", s, None, status="failed") for s in (3, 4)]
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
            *(record(p, s, a, backbone="resnet56", axes=axes)  # every block holds every variant of every group
              for p, s, a in (("none", 0, 0.60), ("none", 1, 0.62), ("p1", 0, 0.70), ("p1", 1, 0.72)))]
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


def test_the_terminal_table_fits_120_columns_for_a_9_variant_grid(tmp_path):
    """none + 4 patterns × 2 gate forms with long labels, 3 seeds: the default table keeps the columns a reader
    needs first and fits 120 columns (long variant names shortened with …); --wide has them all."""
    recs = []
    for seed in range(3):
        for pattern, gate in [("none", None)] + [(p, g) for p in ("p1", "p2", "p3", "p4")
                                                 for g in ("mask", "near_identity")]:
            noise = 0.003 * ((seed * 5 + len(pattern + str(gate))) % 3)  # differences that vary by seed
            rec = record(pattern, seed, 0.68 + noise - (0.06 if (pattern, gate) == ("p2", "mask") else 0),
                         attention="cbam_timm", axes=())
            rec["id"] += f"-{gate}-with-a-long-name"
            rec["axes"] = {"model.pattern": pattern, "model.gate": gate, "model.attention": "cbam_timm",
                           "model.lambda_init": 0.123456789, "model.gamma_r_init": 0.0987654321, "seed": seed}
            recs.append(rec)
    summary = summarize(load_records(write_runs(tmp_path, recs))[0])
    lines = format_summary(summary).splitlines()
    assert len(lines) == 2 + 9 and max(map(len, lines)) <= 120
    assert lines[0].split() == ["variant", "n", "test", "acc", "%", "Δ", "[95%", "CI]", "p", "Holm", "verdict",
                                "rank"]
    p2 = next(line for line in lines if "p2/gate=mask" in line)
    assert p2.split()[5].startswith("-6.") and p2.split()[6].startswith("[") and "different" in p2 and "…" in p2
    assert max(map(len, format_summary(summary, wide=True).splitlines())) > 120


def test_format_summary_shows_percent_ci_delta_and_p(results):
    summary = summarize(load_records(results)[0])
    text = format_summary(summary, wide=True)
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

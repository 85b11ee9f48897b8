"""The written report: every file on disk, the plots, and the gate and mask trajectories."""

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from record_fixtures import P1_HISTORY, gates, masks, record, write_runs

from attnplace.report.build import write_report
from attnplace.report.plots import plot_accuracy
from attnplace.report.records import load_records
from attnplace.report.summary import summarize
from attnplace.report.trajectories import gate_trajectories, mask_trajectories


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


# ---------------------------------------------------------------- masks


def _masked(root: Path) -> Path:
    recs = [record("none", s, 0.8) for s in (0, 1)]
    for seed, (mean, gain) in enumerate(((0.5, 0.9), (0.7, 1.1))):
        history = [{"epoch": 0, "masks": masks(mean - 0.1, gain)}, {"epoch": 1, "masks": masks(mean, gain)}]
        recs.append(record("p1", seed, 0.82, history=history))
    history = [{"epoch": 0, "masks": {**masks(0.3, 1.0, "attn_s"), **masks(0.6, 0.8, "attn_r")}}]
    recs += [record("p4", seed, 0.81, history=history) for seed in (0, 1)]
    return write_runs(root, recs)


def test_masks_csv_long_form_and_per_stage_means(tmp_path):
    report = write_report(_masked(tmp_path))
    long = pd.read_csv(tmp_path / "masks.csv")
    assert list(long.columns) == ["run", "variant", "seed", "epoch", "stage", "block", "module", "stat", "value"]
    assert len(long) == 2 * 2 * 2 * 3 + 2 * 2 * 2 * 3  # p1: 2 seeds x 2 epochs x 2 blocks x 3 stats; p4: 2 modules
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


# ---------------------------------------------------------------- validation curves


def _trained(root: Path, epochs: int = 4) -> Path:
    """none and p2 on seeds 0-2 with a known val acc per epoch: p2 trails by (epoch + seed) points after each
    epoch, so its paired Δ at epoch e (trained) is -(e + 1) pp with seed differences -(e-1, e, e+1) pp."""
    recs = []
    for seed in range(3):
        base = [{"epoch": e, "val_acc": 0.5 + 0.05 * e} for e in range(epochs)]
        gap = [{"epoch": e, "val_acc": 0.5 + 0.05 * e - (e + seed) / 100} for e in range(epochs)]
        recs += [record("none", seed, 0.7, history=base), record("p2", seed, 0.6, history=gap)]
        recs.append(record("p1", seed, None, status="failed", history=[{"epoch": 0, "val_acc": 0.1}]))
    return write_runs(root, recs)


def test_validation_curves_pair_each_epoch_on_the_seeds(tmp_path):
    report = write_report(_trained(tmp_path))
    curves = pd.read_csv(tmp_path / "curves.csv").set_index(["variant", "epoch"])
    assert sorted(set(curves.index.get_level_values("epoch"))) == [1, 2, 3, 4]  # epochs trained
    for trained in (1, 4):
        p2 = curves.loc[("p2/se", trained)]
        assert p2["diff"] == pytest.approx(-trained / 100)  # seed differences -(trained - 1 + seed) pp: mean -trained
        half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # their SD is 1 pp
        assert (p2["diff_ci_low"], p2["diff_ci_high"]) == pytest.approx((-trained / 100 - half, -trained / 100 + half))
        assert (p2["n"], p2["n_pairs"]) == (3, 3)
        assert p2["acc_mean"] == pytest.approx(0.5 + 0.05 * (trained - 1) - trained / 100)
    none = curves.loc[("none", 4)]
    assert none["baseline"] and none["diff"] == 0 and math.isnan(none["diff_ci_low"])
    assert "p1/se" not in curves.index.get_level_values("variant")  # failed: no curve, as in the tables
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "summary.md").read_text()
    assert "| p2/se | -1.00 [-3.48, +1.48] | -2.00 [-4.48, +0.48] | -3.00 [-5.48, -0.52] | -4.00 [-6.48, -1.52] |" in md
    assert len(report.curves) == 2 * 4


def test_quarters_average_each_run_over_its_quarter_then_pair_the_seeds(tmp_path):
    """8 epochs: quarters of 2 epochs. p2 trails by (e + seed) pp after epoch index e, so seed s's quarter q
    (e = 2q-2, 2q-1) trails by 2q - 1.5 + s pp: Δ -(2q - 0.5) pp over 3 seeds, their SD 1 pp."""
    report = write_report(_trained(tmp_path, epochs=8))
    quarters = pd.read_csv(tmp_path / "curve_quarters.csv").set_index(["variant", "quarter"])
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    for q in range(1, 5):
        p2 = quarters.loc[("p2/se", q)]
        assert (p2["first_epoch"], p2["last_epoch"], p2["n"], p2["n_pairs"]) == (2 * q - 1, 2 * q, 3, 3)
        assert p2["diff"] == pytest.approx(-(2 * q - 0.5) / 100)
        assert (p2["diff_ci_low"], p2["diff_ci_high"]) == pytest.approx((p2["diff"] - half, p2["diff"] + half))
        assert p2["acc_mean"] == pytest.approx(0.5 + 0.05 * (2 * q - 1.5) - (2 * q - 0.5) / 100)
    assert quarters.loc[("none", 4), "baseline"] and "p1/se" not in quarters.index.get_level_values("variant")
    md = (tmp_path / "summary.md").read_text()
    assert "|  | 1–2 | 3–4 | 5–6 | 7–8 |" in md
    assert "| p2/se | -1.50 [-3.98, +0.98] | -3.50 [-5.98, -1.02] | -5.50 [-7.98, -3.02] | -7.50 [-9.98, -5.02] |" in md
    assert len(report.quarters) == 2 * 4


def test_records_without_val_acc_write_no_curves(results):
    report = write_report(results)
    assert report.curves.empty and report.quarters.empty and not (results / "curves.csv").exists()
    assert not (results / "curve_quarters.csv").exists() and not (results / "curves.png").exists()
    assert "Over training" not in (results / "summary.md").read_text()

"""Results aggregation: hand-written records with known numbers in, known statistics out."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from attnplace.errors import UserError
from attnplace.grid.plots import plot_accuracy
from attnplace.grid.records import load_records
from attnplace.grid.report import caveats, gate_trajectories, summarize, write_report
from attnplace.grid.tables import format_markdown, format_summary

T975_DF2 = 4.302653  # t_{0.975, 2} from a table: the 95% CI multiplier for n = 3
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_results.ipynb"


def record(pattern, seed, acc, *, attention="se", backbone="resnet20", status="completed",
           history=None, axes=("model.pattern", "model.attention", "seed"), **extra):
    """A record.json as the training code writes it; `axes` picks which config keys are grid axes."""
    config = {"seed": seed, "model": {"backbone": backbone, "pattern": pattern, "attention": attention}}
    values = {"model.pattern": pattern, "model.attention": attention, "model.backbone": backbone, "seed": seed}
    metrics = None if acc is None else {
        "test_acc": acc, "val_acc": acc, "best_val_acc": acc, "params": 1000 + seed,
        "flops": 2e6, "train_images_per_s": 500.0, "duration_s": 10.0}
    return {"id": f"{backbone}-{pattern}-{attention}-s{seed}", "grid": "g", "status": status,
            "error": "loss is NaN" if status == "failed" else None,
            "failed_epoch": 3 if status == "failed" else None,
            "axes": {k: values[k] for k in axes}, "config": config, "metrics": metrics,
            "history": history or [], "environment": {}, **extra}


def write_runs(root: Path, records, grid_axes=None) -> Path:
    for rec in records:
        path = root / "runs" / rec["id"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rec if isinstance(rec, str) else json.dumps(rec))
    if grid_axes:
        (root / "grid.json").write_text(json.dumps({"name": "g", "axes": grid_axes}))
    return root


def write_raw(root: Path, run_id: str, text: str) -> Path:
    path = root / "runs" / run_id / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def gates(*values):
    """Gate dict for one epoch: two stage-2 γ_s blocks and one stage-3 λ."""
    return dict(zip(["stage2.block0.gamma_s", "stage2.block1.gamma_s", "stage3.block0.lambda"], values))


P1_HISTORY = {0: [{"epoch": 0, "gates": gates(0.1, 0.3, 0.5)}, {"epoch": 1, "gates": gates(0.2, 0.4, 0.6)}],
              1: [{"epoch": 0, "gates": gates(0.3, 0.5, 0.7)}, {"epoch": 1, "gates": gates(0.4, 0.6, None)}],
              2: [{"epoch": 0}]}
BASE = [0.90, 0.91, 0.93]
P1 = [0.90, 0.92, 0.94]


@pytest.fixture
def results(tmp_path) -> Path:
    """A small grid: baseline and p1 on seeds 0-2, p2 with one failure, p3 one seed, p4 all failed,
    one running run, a corrupt and a partial record."""
    recs = [record("none", s, a) for s, a in enumerate(BASE)]
    recs += [record("p1", s, a, history=P1_HISTORY[s]) for s, a in enumerate(P1)]
    recs += [record("p2", 0, 0.95), record("p2", 1, 0.93),
             record("p2", 2, None, status="failed", history=[{"epoch": 0, "gates": gates(9, 9, 9)}])]
    recs += [record("p3", 0, 0.91), record("p4", 0, None, status="failed"), record("p3", 1, None, status="running")]
    write_runs(tmp_path, recs, {"model.pattern": ["none", "p1", "p2", "p3", "p4"],
                                "model.attention": ["se"], "seed": [0, 1, 2]})
    write_raw(tmp_path, "corrupt", '{"id": "corrupt", "status": ')
    partial = record("p1", 5, 0.5)
    del partial["metrics"]
    write_raw(tmp_path, "partial", json.dumps(partial))
    return tmp_path


def row(summary: pd.DataFrame, variant: str) -> pd.Series:
    (match,) = summary.index[summary["variant"] == variant]
    return summary.loc[match]


def welch_by_hand(a, b):
    """Welch's t-test from its textbook formula (t statistic and Welch–Satterthwaite df)."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


# ---------------------------------------------------------------- loading


def test_load_records_skips_bad_files_and_reports_them(results):
    runs, problems = load_records(results)
    assert len(runs) == 12
    assert sorted(Path(p.split(":")[0]).parent.name for p in problems) == ["corrupt", "partial"]
    assert any("metrics" in p for p in problems)
    assert list(runs.columns[:7]) == ["id", "status", "error", "failed_epoch",
                                      "model.pattern", "model.attention", "seed"]
    p2_failed = runs.set_index("id").loc["resnet20-p2-se-s2"]
    assert (p2_failed["status"], p2_failed["error"], p2_failed["failed_epoch"]) == ("failed", "loss is NaN", 3)
    assert math.isnan(p2_failed["test_acc"])
    assert runs.set_index("id").loc["resnet20-p1-se-s1", "test_acc"] == 0.92
    assert "test_acc5" not in runs


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.update(status="done"), "'status'"),
    (lambda r: r["metrics"].update(test_acc=91.2), "fractions"),
    (lambda r: r["metrics"].update(params="big"), "metrics.params"),
    (lambda r: r.update(config=[1]), "'config'"),
    (lambda r: r.update(history=[{"epoch": 0, "gates": {"stage2.block0.lambda": "x"}}]), "history[0].gates"),
    (lambda r: r.update(failed_epoch=True), "failed_epoch"),
])
def test_wrong_types_are_problems_not_crashes(tmp_path, mutate, reason):
    bad = record("p1", 0, 0.9)
    mutate(bad)
    path = write_raw(tmp_path, "bad", json.dumps(bad))
    write_runs(tmp_path, [record("none", 0, 0.9)])
    runs, problems = load_records(tmp_path)
    assert list(runs["id"]) == ["resnet20-none-se-s0"]
    assert len(problems) == 1 and problems[0].startswith(str(path)) and reason in problems[0]


def test_single_runs_without_axes_use_backbone_pattern_attention(tmp_path):
    write_runs(tmp_path, [record("p4", 0, 0.9, axes=(), attention="cbam"),
                          record("none", 0, 0.8, axes=(), backbone="resnet56")])
    runs, problems = load_records(tmp_path)
    assert problems == []
    assert list(runs.columns[4:8]) == ["model.backbone", "model.pattern", "model.attention", "seed"]
    assert sorted(runs["variant"]) == ["resnet20/p4/cbam", "resnet56/none"]


def test_missing_or_empty_results_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope"):
        load_records(tmp_path / "nope")
    write_raw(tmp_path, "corrupt", "{")
    with pytest.raises(UserError, match=str(tmp_path)):
        write_report(tmp_path)


def _with_epochs(rec: dict, epochs: int) -> dict:
    rec["config"]["trainer"] = {"max_epochs": epochs}
    rec["id"] += f"-e{epochs}"
    return rec


def test_a_variant_mixing_two_configs_is_refused_with_one_line(tmp_path):
    """A grid rerun with more epochs beside the old runs: averaging them would mix two experiments."""
    recs = [_with_epochs(record(p, s, 0.9), 10) for p in ("none", "p1") for s in (0, 1)]
    recs.append(_with_epochs(record("p1", 2, 0.95), 20))
    write_runs(tmp_path, recs)
    with pytest.raises(UserError) as err:
        load_records(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "variant p1/se mixes runs" in message
    assert "trainer.max_epochs (10 vs 20)" in message


def test_variants_from_different_base_configs_are_refused(tmp_path):
    recs = [_with_epochs(record("none", s, 0.9), 10) for s in (0, 1)]
    recs += [_with_epochs(record("p1", s, 0.9), 30) for s in (0, 1)]
    with pytest.raises(UserError, match=r"runs differ in trainer.max_epochs \(10 vs 30\), which is not an axis"):
        load_records(write_runs(tmp_path, recs))


def test_repeated_seeds_are_refused(tmp_path):
    again = record("p1", 1, 0.93)
    again["id"] += "-again"
    write_runs(tmp_path, [record("none", 1, 0.9), record("p1", 1, 0.92), again])
    with pytest.raises(UserError, match="variant p1/se has seed 1 more than once"):
        load_records(tmp_path)


def test_grid_json_run_list_leaves_earlier_runs_out(tmp_path):
    old = [_with_epochs(record(p, s, 0.5), 10) for p in ("none", "p1") for s in (0, 1)]
    new = [_with_epochs(record(p, s, 0.9 + 0.01 * s), 20) for p in ("none", "p1") for s in (0, 1)]
    write_runs(tmp_path, old + new)
    (tmp_path / "grid.json").write_text(json.dumps({"name": "g", "axes": {"model.pattern": [], "seed": []},
                                                     "runs": [r["id"] for r in new] + ["never-started"]}))
    report = write_report(tmp_path)
    assert sorted(report.runs["id"]) == sorted(r["id"] for r in new)
    assert report.summary.set_index("variant").loc["p1/se", "acc_mean"] == pytest.approx(0.905)
    assert report.notes == ["4 run folder(s) in runs/ are not in grid.json (an earlier configuration of the grid) "
                            "and are left out, e.g. resnet20-none-se-s0-e10",
                            "unfinished: 1 run(s) not started, 0 stopped mid-training (not counted); rerun the "
                            "grid command to finish them"]
    assert report.problems == []  # a run not started yet is pending, not a broken record
    assert "are not in grid.json" in (tmp_path / "summary.md").read_text()


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
    assert list(summary.index) == ["none", "p3c/gate_lr_scale=10", "p3c/gate_lr_scale=1"]
    assert summary.loc["p3c/gate_lr_scale=10", "diff"] == pytest.approx(0.035)
    assert summary.loc["p3c/gate_lr_scale=1", "n_pairs"] == 2


# ---------------------------------------------------------------- statistics


def test_summary_statistics_match_hand_computation(results):
    summary = summarize(load_records(results)[0])
    assert list(summary["variant"]) == ["none", "p2/se", "p1/se", "p3/se", "p4/se"]

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
    assert p2["effect_dz"] == pytest.approx(0.035 / sd)

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
    assert p1["effect_dz"] == pytest.approx((1 - 3 / 11) * (0.96 - np.mean(BASE)) / pooled)
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
    names = {"summary.csv", "summary.md", "summary.tex", "gates.csv", "gates_mean.csv", "accuracy.png", "gates.png"}
    assert {p.name for p in report.written} == names
    for name in names:
        assert (results / name).stat().st_size > 0
    for name in ("accuracy.png", "gates.png"):
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(results.glob(".*.tmp"))

    csv = pd.read_csv(results / "summary.csv").set_index("variant")
    assert {"n", "acc_mean", "acc_std", "ci_low", "ci_high", "diff", "p_value", "diff_ci_low", "diff_ci_high",
            "n_pairs", "p_holm", "effect_dz", "test_on"} <= set(csv.columns)
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

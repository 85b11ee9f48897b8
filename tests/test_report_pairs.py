"""Every variant against every other: the pairs matrix, the omnibus tests, baseline, primary, metric and margin,
on hand-written records (within and factorial: test_report_factorial.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from record_fixtures import record, row, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.grid.spec import load_grid
from attnplace.report.build import build_report, write_report
from attnplace.report.plots import plot_pairs
from attnplace.report.tables import primary_lines

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


# ---------------------------------------------------------------- every variant against every other

ACCS = {"none": [0.80, 0.81, 0.79, 0.80], "p1": [0.83, 0.85, 0.82, 0.84],
        "p2": [0.81, 0.81, 0.80, 0.82],
        "p3": [0.80, 0.82, 0.79, 0.815]}  # p3 − p1 not constant: it would have no spread


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


def test_the_primary_contrast_named_in_the_grid_is_marked_and_stated_first(tmp_path, capsys):
    root = _four_variants(tmp_path)
    grid = json.loads((root / "grid.json").read_text())
    (root / "grid.json").write_text(json.dumps({**grid, "report": {"primary": "p2/se"}}))
    assert main(["report", str(root)]) == 0
    summary = pd.read_csv(root / "summary.csv").set_index("variant")
    assert summary["primary"].to_dict() == {"none": False, "p1/se": False, "p2/se": True, "p3/se": False}
    p2 = summary.loc["p2/se"]  # tested like the others: Holm over the 3 comparisons with none
    d = np.subtract(ACCS["p2"], ACCS["none"])
    assert p2["p_value"] == pytest.approx(stats.ttest_rel(ACCS["p2"], ACCS["none"]).pvalue)
    assert p2["p_holm"] > p2["p_value"]
    stated = (f"primary contrast, named in advance: p2/se against none: {100 * d.mean():+.2f} "
              f"[{100 * p2['diff_ci_low']:+.2f}, {100 * p2['diff_ci_high']:+.2f}] pp over 4 pairs")
    out = capsys.readouterr().out
    assert stated in out and out.index(stated) < out.index("Friedman")  # stated before every other line
    md = (root / "summary.md").read_text()
    assert f"- {stated}" in md and "| p2/se (primary) |" in md and "| p1/se |" in md
    for name, message in (("p9", "primary 'p9' is not a variant of this report; valid: none, p1/se, p2/se, p3/se"),
                          ("none", "primary 'none' is the baseline; valid: a variant compared with it, "
                                   "p1/se, p2/se, p3/se")):
        with pytest.raises(UserError) as err:
            build_report(root, primary=name)
        assert str(err.value) == message


def test_a_primary_contrast_without_a_verdict_says_why(tmp_path):
    """One pair: too few to test. Three pairs that all differ by the same +1.00 pp: exact on these seeds, its
    spread unknown; not "it needs 2 seeds", which it has."""
    base = [0.80, 0.81, 0.79]
    axes = {"model.pattern": ["none", "p2"], "model.attention": ["se"], "seed": [0, 1, 2]}
    same = write_runs(tmp_path / "same", [record(p, s, a + (0.01 if p == "p2" else 0))
                                          for p in ("none", "p2") for s, a in enumerate(base)], axes)
    one = write_runs(tmp_path / "one", [record(p, 0, 0.8) for p in ("none", "p2")], axes)
    said = {name: primary_lines(build_report(root, primary="p2/se").summary) for name, root in
            (("same", same), ("one", one))}
    assert said["same"] == ["primary contrast, named in advance: p2/se against none: +1.00 pp on each of its 3 "
                            "pairs: exact on these seeds, its spread unknown, so untested"]
    assert said["one"] == ["primary contrast, named in advance: p2/se against none: not tested yet (it needs 2 "
                           "seeds both completed)"]


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
    assert grid.describe().report == spec["report"]
    recs = [record(p, s, 0.9, val_acc=0.7 + 0.01 * s + (0.02 + 0.005 * s if p == "p1" else 0))
            for p in ("none", "p1") for s in (0, 1)]
    folder = write_runs(tmp_path / "out", recs)
    # Hand-written records, not the grid's runs: grid.json lists neither the grid's run ids nor its seed blocks.
    (folder / "grid.json").write_text(json.dumps({**grid.describe().content(), "runs": None, "blocks": None}))
    report = write_report(folder)
    assert report.settings.baseline == "p1/se" and report.summary["variant"].iloc[0] == "p1/se"
    assert row(report.summary, "none")["diff"] == pytest.approx(-0.0225)  # val_acc, not test_acc (equal everywhere)
    assert set(report.pairs["verdict"]) <= {"different", "equivalent within ±1 pp", "inconclusive"}
    assert main(["report", str(folder), "--metric", "test_acc", "--baseline", "none"]) == 0
    out = capsys.readouterr().out
    assert "test acc %" in out and "baseline" in next(line for line in out.splitlines() if line.startswith("none"))


@pytest.mark.parametrize("section, message", [
    ({"baseline": "p1", "metrc": "val_acc"}, "unknown key 'report.metrc'; valid: report.baseline, report.metric, "
                                             "report.equivalence_margin, report.primary, report.within, "
                                             "report.factorial, report.contrast, report.tune, report.choose_on"),
    ({"metric": "best_val_acc"}, "report.metric='best_val_acc' is invalid; valid: test_acc, val_acc"),
    ({"equivalence_margin": "wide"}, "report.equivalence_margin: expected float, got 'wide'"),
])
def test_a_bad_report_section_stops_the_grid_in_one_line(tmp_path, section, message):
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"axes": {"model.pattern": ["none"]}, "report": section}))
    with pytest.raises(UserError) as err:
        load_grid(tmp_path / "g.yaml")
    assert str(err.value) == f"{tmp_path / 'g.yaml'}: {message}"


def test_committed_grid_files_say_how_their_tables_read():
    assert yaml.safe_load((EXPERIMENTS / "gate_lr_cpu.yaml").read_text())["report"]["metric"] == "val_acc"
    lr_tuned = yaml.safe_load((EXPERIMENTS / "lr_tuned_cpu.yaml").read_text())["report"]  # chooses, then confirms
    assert (lr_tuned["tune"], lr_tuned["choose_on"], lr_tuned["equivalence_margin"]) == ("optim.lr", [0, 1, 2], 0.5)
    assert len(load_grid(EXPERIMENTS / "lr_tuned_cpu.yaml").runs) == 45
    assert len(load_grid(EXPERIMENTS / "p4_advice_cpu.yaml").runs) == 30  # 6 variants: one option moved at a time
    assert yaml.safe_load((EXPERIMENTS / "gate_lr_cpu.yaml").read_text())["report"]["baseline"] == \
        "p3c/gate_lr_scale=1"
    where_and_how = load_grid(EXPERIMENTS / "where_and_how_cpu.yaml")  # its report section is valid, too
    assert yaml.safe_load((EXPERIMENTS / "where_and_how_cpu.yaml").read_text())["report"] == \
        {"within": ["model.gate"], "factorial": ["model.pattern", "model.gate"]} and len(where_and_how.runs) == 45
    assert yaml.safe_load((EXPERIMENTS / "integration_cpu.yaml").read_text())["report"]["primary"] == "p2"  # SE-POST


def test_the_bf16_where_and_how_study_is_the_fp32_one_in_bf16():
    """Two studies of one question on two CPUs: they may differ in the precision and name only, so that their
    answers can be set side by side."""
    fp32, bf16 = (yaml.safe_load((EXPERIMENTS / f"{n}.yaml").read_text())
                  for n in ("where_and_how_cpu", "where_and_how_bf16_cpu"))
    assert (fp32["base"]["trainer"].pop("precision"), bf16["base"]["trainer"].pop("precision")) == \
        ("32-true", "bf16-mixed")
    assert {**fp32, "name": None} == {**bf16, "name": None}
    runs = [load_grid(EXPERIMENTS / f"{n}.yaml").runs for n in ("where_and_how_cpu", "where_and_how_bf16_cpu")]
    assert [r.axes for r in runs[0]] == [r.axes for r in runs[1]] and len(runs[1]) == 45
    assert {r.config.trainer.precision for r in runs[1]} == {"bf16-mixed"}

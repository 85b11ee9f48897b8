"""Two studies cell by cell (report/across.py): each one's Δ paired within its blocks, and the difference of the
two Δs by Welch's t, checked against scipy on hand-written records."""

import json

import numpy as np
import pytest
from record_fixtures import record, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report.across import across_studies
from attnplace.report.build import build_report


def study(root, deltas_pp, base=(0.70, 0.71, 0.69), attention="se"):
    """none and p2 (its seeds' form: the raw mask) on 3 seeds, p2 − none = `deltas_pp` per seed."""
    recs = [record("none", s, acc, attention=attention) for s, acc in enumerate(base)]
    recs += [record("p2", s, acc + d / 100, attention=attention) for s, (acc, d) in enumerate(zip(base, deltas_pp))]
    return write_runs(root, recs)


def test_each_studys_delta_is_paired_within_it_and_their_difference_is_welch(tmp_path):
    a, b = [-6.0, -5.0, -7.5], [-9.0, -8.5, -11.0]
    frame = across_studies(build_report(study(tmp_path / "a", a)),
                           build_report(study(tmp_path / "b", b, base=(0.60, 0.62, 0.61))))
    (row,) = frame.itertuples(index=False)
    assert row.variant == "p2/se" and (row.n_a, row.n_b) == (3, 3)
    assert row.diff_a == pytest.approx(np.mean(a) / 100) and row.diff_b == pytest.approx(np.mean(b) / 100)
    half_a = stats.t.ppf(0.975, 2) * np.std(a, ddof=1) / np.sqrt(3) / 100
    assert (row.diff_a_low, row.diff_a_high) == pytest.approx((np.mean(a) / 100 - half_a, np.mean(a) / 100 + half_a))
    welch = stats.ttest_ind(np.array(b) / 100, np.array(a) / 100, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert row.diff == pytest.approx((np.mean(b) - np.mean(a)) / 100)
    assert (row.diff_low, row.diff_high) == pytest.approx((ci.low, ci.high))
    assert row.p_value == pytest.approx(welch.pvalue) and row.p_holm == pytest.approx(welch.pvalue)


def test_compare_prints_the_cells_and_each_studys_omnibus(tmp_path, capsys):
    assert main(["compare", str(study(tmp_path / "a", [-6, -5, -7])), str(study(tmp_path / "b", [-1, 0, -2]))]) == 0
    out = capsys.readouterr().out
    assert "| variant | Δ a [95% CI] (n) |" in out and "| b − a [Welch 95% CI] |" in out
    assert "| p2/se | -6.00 [" in out and "| +5.00 [" in out
    assert "\na (test_acc):\n- seed blocks in the tables: 3 (seed 0, 1, 2: 3 not saying their hardware)\n" in out
    assert "\nb (test_acc):\n" in out


def test_two_attention_types_pair_by_where_and_how_cell(tmp_path, capsys):
    """SE against CBAM share no label: by label that is a one-line error naming both sides' variants; by cell,
    p2/se and p2/cbam are both p2 × mask (p2's seeds' form)."""
    se, cbam = study(tmp_path / "se", [-6, -5, -7]), study(tmp_path / "cbam", [-9, -8, -10], attention="cbam")
    assert main(["compare", str(se), str(cbam)]) == 2
    err = capsys.readouterr().err
    assert "share no variant besides the baseline: A has p2/se; B has p2/cbam; --match cell" in err
    frame = across_studies(build_report(se), build_report(cbam), "cell")
    assert list(frame["cell"]) == ["p2 × mask"] and frame["diff"].iloc[0] == pytest.approx(-0.03)
    assert main(["compare", str(se), str(cbam), "--match", "cell"]) == 0
    out = capsys.readouterr().out
    assert "| cell | Δ se [95% CI] (n) |" in out and "| p2 × mask | -6.00 [" in out and "| -3.00 [" in out
    assert main(["compare", str(se), str(cbam), "--match", "label"]) == 2
    assert "--match label: valid: variant, cell" in capsys.readouterr().err


def test_by_cell_two_variants_in_one_cell_are_refused(tmp_path):
    """p4/se and p4/eca are both p4 × near_identity: a row never averages two variants."""
    two = study(tmp_path / "two", [-1, -1, -2])
    write_runs(two, [record("p4", s, 0.7, attention=a) for s in range(3) for a in ("se", "eca")])
    with pytest.raises(UserError, match="study B has several variants in the cell p4 × near_identity: p4/eca, p4/se"):
        across_studies(build_report(study(tmp_path / "one", [-1, 0, -1])), build_report(two), "cell")


def test_compare_takes_another_baseline_and_the_metric(tmp_path, capsys):
    """Against p2 in both studies, the plain block's Δ is p2's negated: e.g. does near_identity − mask change?"""
    a, b = study(tmp_path / "a", [-6, -5, -7]), study(tmp_path / "b", [-1, 0, -2])
    assert main(["compare", str(a), str(b), "--baseline", "p2/se", "--metric", "val_acc"]) == 0
    out = capsys.readouterr().out
    assert "| none | +6.00 [" in out and "| +1.00 [" in out and "| -5.00 [" in out and "\na (val_acc):\n" in out


def test_studies_read_on_other_metrics_or_against_other_baselines_are_refused(tmp_path, capsys):
    """Each study's grid.json names its own metric and baseline: a Δ on validation beside one on test, or one
    against `none` beside one against p1, is no comparison; the flags put both on one footing."""
    a = study(tmp_path / "a", [-6, -5, -7])
    b = write_runs(tmp_path / "b", [record(p, s, 0.7 + 0.01 * s + gain) for p, gain in
                                    (("none", 0), ("p1", 0.02), ("p2", -0.05)) for s in range(3)])
    (b / "grid.json").write_text(json.dumps({"name": "b", "report": {"metric": "val_acc", "baseline": "p1/se"}}))
    assert main(["compare", str(a), str(b)]) == 2
    assert capsys.readouterr().err == ("attnplace: error: study A reads test_acc, study B val_acc: a Δ on validation "
                                       "and one on test are not one quantity; pass --metric test_acc or --metric "
                                       "val_acc\n")
    assert main(["compare", str(a), str(b), "--metric", "test_acc"]) == 2
    assert capsys.readouterr().err == ("attnplace: error: study A's Δs are against the `none` pattern, study B's "
                                       "against p1/se: pass --baseline VARIANT to compare both with one variant\n")
    frame = across_studies(build_report(a), build_report(b, metric="test_acc", baseline="none"))
    assert list(frame["variant"]) == ["p2/se"] and frame["diff_b"].iloc[0] == pytest.approx(-0.05)

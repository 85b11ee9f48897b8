"""Two studies cell by cell (report/across.py): each one's Δ paired within its blocks, and the difference of the
two Δs by Welch's t, checked against scipy on hand-written records."""

import numpy as np
import pytest
from record_fixtures import record, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.report.across import across_studies
from attnplace.report.build import build_report


def study(root, deltas_pp, base=(0.70, 0.71, 0.69)):
    """none and p2 on 3 seeds, p2 − none = `deltas_pp` per seed; p1 only in study A (left out of the cells)."""
    recs = [record("none", s, acc) for s, acc in enumerate(base)]
    recs += [record("p2", s, acc + d / 100) for s, (acc, d) in enumerate(zip(base, deltas_pp))]
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
    assert "| p2/se | -6.00 [" in out and "| b − a [Welch 95% CI] |" in out and "| +5.00 [" in out
    assert "\na (test_acc):\n" in out and "\nb (test_acc):\n" in out


def test_compare_takes_another_baseline_and_the_metric(tmp_path, capsys):
    """Against p2 in both studies, the plain block's Δ is p2's negated: e.g. does near_identity − mask change?"""
    a, b = study(tmp_path / "a", [-6, -5, -7]), study(tmp_path / "b", [-1, 0, -2])
    assert main(["compare", str(a), str(b), "--baseline", "p2/se", "--metric", "val_acc"]) == 0
    out = capsys.readouterr().out
    assert "| none | +6.00 [" in out and "| +1.00 [" in out and "| -5.00 [" in out and "\na (val_acc):\n" in out

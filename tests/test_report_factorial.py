"""The omnibus test within each value of a placement axis (`report.within`) and the factorial repeated-measures
ANOVA of crossing placement axes (`report.factorial`), on hand-written records of pattern × gate form."""

import numpy as np
import pandas as pd
import pytest
from record_fixtures import record, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report import summary
from attnplace.report.build import build_report, write_report

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
        friedman = stats.friedmanchisquare(*chosen)
        assert got.loc[f"model.gate={gate}", "friedman_chi2"] == pytest.approx(friedman.statistic)
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


def test_a_gate_form_run_on_one_pattern_only_stays_outside_the_crossing_cells():
    """The seeds' p3c is p3 × mix, with mix on no other pattern: the factorial holds the pattern × gate cells
    that cross (p1–p4 × mask/near_identity) and names p3c as left outside."""
    patterns, gates = ["p1", "p2", "p3", "p4"], ["mask", "near_identity"]
    keys = pd.MultiIndex.from_tuples([*((p, g) for p in patterns for g in gates), ("p3c", "mix")])
    kept = summary.crossing(keys)
    assert sorted(kept) == sorted((p, g) for p in patterns for g in gates)
    assert list(summary.crossing(keys.drop(("p2", "mask")))) == [(p, g) for p in ("p1", "p3", "p4") for g in gates]


def test_a_factorial_against_another_baseline_leaves_the_plain_block_outside(tmp_path):
    """With p2 × mask as the baseline, the plain block is one of the others but has no gate: it is in no cell
    (its blank gate used to make the crossing loop forever). Here p1 alone is left to cross, which says so."""
    folder = gated_runs(tmp_path)
    with pytest.raises(UserError, match="model.pattern × model.gate do not cross in this grid: "
                                        "no variant has p2/mask"):
        build_report(folder, baseline="p2/gate=mask", factorial=("model.pattern", "model.gate"))
    with_p1 = build_report(folder, baseline="p1/gate=mask", within=("model.gate",))  # the plain block is a variant
    assert "none" in set(with_p1.summary["variant"]) and with_p1.factorial.empty

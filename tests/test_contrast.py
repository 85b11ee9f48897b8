"""The contrast across groups (report/contrast.py): hand-written records at two learning rates in, the paired
changes and gap changes a t-test by hand gives out; the refusals name the bad axis or value."""

import json

import numpy as np
import pytest
from record_fixtures import lr_grid, lr_records, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report.build import write_report

ACCS = {("none", 0.1): [0.90, 0.91, 0.92, 0.90], ("p2", 0.1): [0.84, 0.86, 0.85, 0.83],
        ("none", 0.2): [0.89, 0.91, 0.90, 0.90], ("p2", 0.2): [0.88, 0.89, 0.90, 0.87]}


def holm(p):
    """Holm over a family, by hand (two p-values at most here)."""
    order = np.argsort(p)
    out, running = np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return list(out)


def test_a_contrast_pairs_each_variant_and_each_gap_across_the_axis_by_seed(tmp_path):
    write_runs(tmp_path, lr_records(ACCS), lr_grid([0.1, 0.2]))
    frame = write_report(tmp_path, contrast="optim.lr=0.1,0.2").contrast
    assert list(zip(frame["family"], frame["variant"])) == [("change", "none"), ("change", "p2"),
                                                            ("gap", "p2 − none")]
    assert list(frame["after"]) == ["none/lr=0.2", "p2/lr=0.2", "p2/lr=0.2"]
    changes = {p: np.subtract(ACCS[(p, 0.2)], ACCS[(p, 0.1)]) for p in ("none", "p2")}
    gap = changes["p2"] - changes["none"]  # (p2 − none) at 0.2 minus (p2 − none) at 0.1
    assert frame["diff"].tolist() == pytest.approx([changes["none"].mean(), changes["p2"].mean(), gap.mean()])
    raw = [stats.ttest_1samp(d, 0).pvalue for d in (changes["none"], changes["p2"], gap)]
    assert frame["p_value"].tolist() == pytest.approx(raw)
    assert frame["p_holm"].tolist() == pytest.approx([*holm(raw[:2]), raw[2]])  # Holm within each family
    assert frame["effect"].iloc[2] == pytest.approx(gap.mean() / gap.std(ddof=1))
    assert set(frame["n_pairs"]) == {4}
    summary_md = (tmp_path / "summary.md").read_text()
    assert "## Across optim.lr (contrast.csv)" in summary_md and "| gap p2 − none | 4 |" in summary_md
    assert (tmp_path / "contrast.csv").exists()


def test_a_contrast_pairs_only_the_seeds_both_sides_completed(tmp_path):
    accs = {**ACCS, ("p2", 0.2): [0.88, None, 0.90, 0.87]}  # seed 1 of p2 at lr 0.2 did not complete
    write_runs(tmp_path, lr_records(accs), lr_grid([0.1, 0.2]))
    frame = write_report(tmp_path, contrast="optim.lr=0.1,0.2").contrast.set_index("variant")
    assert frame.loc["p2", "n_pairs"] == 3 and frame.loc["p2 − none", "n_pairs"] == 3
    seeds = [0, 2, 3]
    expected = np.mean([ACCS[("p2", 0.2)][s] - ACCS[("p2", 0.1)][s] for s in seeds])
    assert frame.loc["p2", "diff"] == pytest.approx(expected)


def test_a_grid_file_s_contrast_travels_in_grid_json(tmp_path):
    write_runs(tmp_path, lr_records(ACCS))
    (tmp_path / "grid.json").write_text(json.dumps({"name": "g", "axes": lr_grid([0.1, 0.2]),
                                                    "report": {"contrast": "optim.lr=0.2,0.1"}}))
    frame = write_report(tmp_path).contrast
    assert frame["diff"].iloc[0] == pytest.approx(-np.subtract(ACCS[("none", 0.2)], ACCS[("none", 0.1)]).mean())
    assert write_report(tmp_path, contrast="optim.lr=0.1,0.2").contrast["after_value"].iloc[0] == "0.2"  # the flag wins


@pytest.mark.parametrize("contrast, message", [
    ("optim.lr", r"^contrast='optim.lr' is invalid; valid: AXIS=BEFORE,AFTER \(e.g. optim.lr=0.1,0.2\)$"),
    ("optim.lr=0.1,0.2,0.3", r"^contrast='optim.lr=0.1,0.2,0.3' is invalid; valid: AXIS=BEFORE,AFTER"),
    ("optim.wd=0.1,0.2", r"^report.contrast: 'optim.wd' is no axis this report varies outside the placement; "
                         r"valid: optim.lr$"),
    ("model.pattern=none,p2", r"^report.contrast: 'model.pattern' is a placement axis, whose variants each group "
                              r"compares already; valid: optim.lr$"),
    ("optim.lr=0.1,0.3", r"^report.contrast: optim.lr has no value 0.3 in this report; valid: 0.1, 0.2$"),
])
def test_a_bad_contrast_is_one_line_naming_the_key_and_what_is_valid(tmp_path, contrast, message):
    write_runs(tmp_path, lr_records(ACCS), lr_grid([0.1, 0.2]))
    with pytest.raises(UserError, match=message):
        write_report(tmp_path, contrast=contrast)


def test_the_command_prints_the_contrast_within_120_columns(tmp_path, capsys):
    write_runs(tmp_path, lr_records(ACCS), lr_grid([0.1, 0.2]))
    assert main(["report", str(tmp_path), "--contrast", "optim.lr=0.1,0.2"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr: 0.2 − 0.1 in pp of test acc, paired by seed" in out
    assert "| p2 |" in out and max(map(len, out.splitlines())) <= 120

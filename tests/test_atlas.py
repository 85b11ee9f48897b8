"""The atlas: hand-written records of several studies in, known cells, verdicts and best cells out, each study on
its own; the studies it leaves out named with why; atlas.md and atlas.png written. The regime figure is in
test_atlas_regimes.py."""

import json

import numpy as np
import pandas as pd
import pytest
from record_fixtures import study_record, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.models.blocks import where_and_how
from attnplace.report.atlas import CELLS, build_atlas, cell_of
from attnplace.report.atlas_page import load_atlas, write_atlas
from attnplace.report.build import build_report

# Study "alpha": 4 seeds, precision a grid axis (two groups), the seeds' gate forms (p3c: p3 × mix).
# 32-true: on every seed none and p1 take ranks 1 and 2 (two seeds each), p3c 3 and p2 4, so Friedman's
# χ² = 10.8 (p = 0.013): the best cell is p1 × mask. p1 is within 0.12 pp of none on every seed, on either side
# (equivalent within ±0.5), p2 6-7 pp below (different), p3c noisy (inconclusive).
ALPHA_32 = {"none": [0.700, 0.710, 0.690, 0.705],
            "p1": [0.701, 0.7088, 0.6908, 0.7045],
            "p3c": [0.696, 0.698, 0.688, 0.685],
            "p2": [0.640, 0.645, 0.620, 0.643]}
# bf16-mixed: the ranks change from seed to seed, so Friedman is far from significant: no best cell.
ALPHA_BF16 = {"none": [0.700, 0.690, 0.710, 0.695],
              "p1": [0.705, 0.685, 0.712, 0.690],
              "p3c": [0.698, 0.695, 0.705, 0.699],
              "p2": [0.702, 0.688, 0.706, 0.697]}
# Study "beta": one group, 5 seeds, the gate an axis, two attention types (two rows). se: p4 × near_identity
# beats none beats p2 × mask on every seed (Friedman χ² = 10, p = 0.0067): the best cell is p4 × near_identity.
BETA = {("none", None, "none"): [0.60, 0.61, 0.62, 0.59, 0.605],
        ("p2", "mask", "se"): [0.55, 0.56, 0.575, 0.53, 0.56],
        ("p4", "near_identity", "se"): [0.61, 0.615, 0.63, 0.60, 0.612],
        ("p2", "mask", "cbam"): [0.61, 0.60, 0.625, 0.585, 0.606]}


def write_alpha(root, p2_32=None):
    axes = ("model.pattern", "trainer.precision", "seed")
    recs = [study_record(p, s, a, precision=precision, axes=axes, attention="none" if p == "none" else "se")
            for precision, table in (("32-true", {**ALPHA_32, **({"p2": p2_32} if p2_32 else {})}),
                                     ("bf16-mixed", ALPHA_BF16))
            for p, accs in table.items() for s, a in enumerate(accs)]
    return write_runs(root, recs, {"seed": [0, 1, 2, 3], "model.pattern": ["none", "p1", "p2", "p3c"],
                                   "trainer.precision": ["32-true", "bf16-mixed"]})


def write_beta(root, scale=1.0):
    axes = ("model.pattern", "model.gate", "model.attention", "seed")
    recs = [study_record(p, s, a * scale, gate=g, attention=att, axes=axes)
            for (p, g, att), accs in BETA.items() for s, a in enumerate(accs)]
    return write_runs(root, recs, {"seed": list(range(5)), "model.pattern": ["none", "p2", "p4"],
                                   "model.gate": [None, "mask", "near_identity"], "model.attention": ["se", "cbam"]})


@pytest.fixture
def root(tmp_path):
    write_alpha(tmp_path / "alpha")
    write_beta(tmp_path / "beta")
    return tmp_path


def expected(cell, base, margin=0.005):
    """Δ, its CI (pp), p and TOST p of a paired t-test, from scipy rather than the report's own formulas."""
    a, b = np.asarray(cell), np.asarray(base)
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(0.95)
    d = a - b
    tost = max(stats.ttest_1samp(d, -margin, alternative="greater").pvalue,
               stats.ttest_1samp(d, margin, alternative="less").pvalue)
    return 100 * d.mean(), 100 * ci.low, 100 * ci.high, test.pvalue, tost


def holm(p: dict) -> dict:
    """Holm's step-down adjustment, written out: the i-th smallest p times (m − i), never below the one before."""
    order, out, running = sorted(p, key=p.get), {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[key]))
        out[key] = running
    return out


def row_of(atlas, study, group="", attention="se"):
    (row,) = atlas.rows[(atlas.rows["study"] == study) & (atlas.rows["group"] == group)
                        & (atlas.rows["attention"] == attention)].itertuples(index=False)
    return row, atlas.cells[atlas.cells["row"] == row.row].set_index("cell")


def test_cells_verdicts_and_best_cells_of_two_studies(root):
    atlas, _ = load_atlas(root)
    assert list(atlas.rows["study"]) == ["alpha", "alpha", "beta", "beta"]
    assert atlas.columns == ["p1 × mask", "p2 × mask", "p3 × mix", "p4 × near_identity"]

    row, cells = row_of(atlas, "alpha", "precision=32-true")
    assert (row.dataset, row.backbone, row.train_subset, row.max_epochs, row.precision, row.seed_blocks,
            row.metric, row.epoch) == ("imagefolder (cifar10-jpeg.tar.gz)", "resnet20", "10000", "10", "32-true", 4,
                                       "test_acc", "")
    assert list(cells.index) == ["p1 × mask", "p2 × mask", "p3 × mix"]  # p3c is p3 × mix
    found = {}
    for cell, pattern in (("p1 × mask", "p1"), ("p2 × mask", "p2"), ("p3 × mix", "p3c")):
        delta, low, high, p, tost = expected(ALPHA_32[pattern], ALPHA_32["none"])
        assert cells.loc[cell, ["delta_pp", "ci_low_pp", "ci_high_pp", "p_value", "tost_p"]].tolist() == \
            pytest.approx([delta, low, high, p, tost])
        found[cell] = p
    assert cells["p_holm"].to_dict() == pytest.approx(holm(found))  # over the row's three cells
    assert cells["verdict"].to_dict() == {"p1 × mask": "equivalent within ±0.5 pp", "p2 × mask": "different",
                                          "p3 × mix": "inconclusive"}
    chi2 = stats.friedmanchisquare(*ALPHA_32.values())
    assert (row.friedman_chi2, row.friedman_p) == pytest.approx((chi2.statistic, chi2.pvalue))
    assert row.differ and row.best == "p1 × mask" and cells["best"].tolist() == [True, False, False]
    assert row.best_mean_pct == pytest.approx(100 * np.mean(ALPHA_32["p1"]))

    row, cells = row_of(atlas, "alpha", "precision=bf16-mixed")
    assert row.precision == "bf16-mixed" and row.friedman_p > 0.05
    assert not row.differ and row.best == "" and not cells["best"].any()

    # Beta: one group, one row per attention type, Holm over each row's own cells (not the group's three).
    row, cells = row_of(atlas, "beta", "", "se")
    assert list(cells.index) == ["p2 × mask", "p4 × near_identity"]
    base = BETA[("none", None, "none")]
    p2, p4 = expected(BETA[("p2", "mask", "se")], base), expected(BETA[("p4", "near_identity", "se")], base)
    assert cells.loc["p4 × near_identity", "delta_pp"] == pytest.approx(p4[0])
    assert cells["p_holm"].to_dict() == pytest.approx(holm({"p2 × mask": p2[3], "p4 × near_identity": p4[3]}))
    assert row.differ and row.best == "p4 × near_identity" and row.best_mean_pct > row.baseline_mean_pct
    assert row.seed_blocks == 5 and row.k == 3 and row.n_seeds == 5
    cbam, cbam_cells = row_of(atlas, "beta", "", "cbam")
    assert list(cbam_cells.index) == ["p2 × mask"] and not cbam.differ and cbam.best == ""
    # A row that is a whole group has the report's own omnibus test.
    omnibus = build_report(root / "alpha").omnibus.set_index("group")
    assert row_of(atlas, "alpha", "precision=32-true")[0].friedman_p == \
        pytest.approx(omnibus.loc["precision=32-true", "friedman_p"])


def test_a_study_never_pools_with_another(root):
    before, _ = load_atlas(root)
    write_beta(root / "beta", scale=0.9)  # beta's numbers change: alpha's cells do not
    write_alpha(root / "gamma", p2_32=[0.70, 0.71, 0.69, 0.705])  # the same design, other numbers
    after, _ = load_atlas(root)
    pd.testing.assert_frame_equal(before.cells[before.cells["study"] == "alpha"].reset_index(drop=True),
                                  after.cells[after.cells["study"] == "alpha"].reset_index(drop=True))
    assert not np.allclose(before.cells.loc[before.cells["study"] == "beta", "delta_pp"],
                           after.cells.loc[after.cells["study"] == "beta", "delta_pp"])
    gamma = after.cells[after.cells["study"] == "gamma"].set_index(["row", "cell"])
    assert gamma.xs("p2 × mask", level="cell")["delta_pp"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert (after.cells["study"] == after.rows.set_index("row").loc[after.cells["row"], "study"].to_numpy()).all()


def test_no_best_cell_when_the_omnibus_test_is_not_significant(root):
    atlas, _ = write_atlas(root)
    text = (root / "atlas.md").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("- alpha · precision=bf16-mixed")]
    assert "no placement differs (Friedman p = " in line and "no best cell" in line
    (table_line,) = [x for x in text.splitlines() if x.startswith("| alpha | precision=bf16-mixed")]
    assert "★" not in table_line and "**" not in table_line
    (table_line,) = [x for x in text.splitlines() if x.startswith("| alpha | precision=32-true")]
    assert table_line.count("★") == 1 and "best cell p1 × mask ★" in text


def test_a_row_of_one_seed_is_not_tested_rather_than_equal(root):
    """One seed block: no CI, no Friedman test, so the row claims neither a difference nor its absence."""
    write_runs(root / "early", [study_record(p, 0, a, attention="none" if p == "none" else "se")
                                for p, a in (("none", 0.65), ("p1", 0.68), ("p2", 0.33))],
               {"seed": [0, 1, 2], "model.pattern": ["none", "p1", "p2"]})
    write_atlas(root)
    (line,) = [x for x in (root / "atlas.md").read_text().splitlines() if x.startswith("- early")]
    assert line.endswith("3 variants (2 cells and `none`) on the 1 seed every one completed: not tested "
                         "(Friedman's test needs 2 seeds that rank the variants); no best cell.")


def test_studies_left_out_are_named_with_the_reason(root):
    smoke = [study_record(p, s, 0.8 + 0.01 * s, data="synthetic", attention="none" if p == "none" else "se")
             for p in ("none", "p1") for s in range(2)]
    write_runs(root / "smoke", smoke, {"model.pattern": ["none", "p1"], "seed": [0, 1]})
    other = [study_record(p, s, 0.8 + 0.01 * s, attention="none" if p == "none" else "se")
             for p in ("none", "p1", "p4") for s in range(2)]
    write_runs(root / "other_baseline", other)
    (root / "other_baseline" / "grid.json").write_text(json.dumps(
        {"name": "g", "axes": {"model.pattern": ["none", "p1", "p4"], "seed": [0, 1]}, "report": {"baseline": "p1"}}))
    write_runs(root / "no_cell", [study_record("none", s, 0.8) for s in range(2)])
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "notes.md").write_text("timings\n")

    atlas, others = load_atlas(root)
    reasons = atlas.left_out.set_index("study")["reason"].to_dict()
    assert set(reasons) == {"smoke", "other_baseline", "no_cell"}
    assert reasons["smoke"].startswith("synthetic data")
    assert reasons["other_baseline"].startswith("its report baseline is p1, not the `none` pattern")
    assert reasons["no_cell"].startswith("no where × how cell")
    assert others == ["benchmarks"] and set(atlas.rows["study"]) == {"alpha", "beta"}
    write_atlas(root)
    text = (root / "atlas.md").read_text()
    assert "- smoke: synthetic data" in text and "- other_baseline: its report baseline is p1," in text
    assert "not studies (no runs/): benchmarks" in text


def test_the_command_writes_atlas_md_and_png(root, capsys):
    assert main(["atlas", str(root)]) == 0
    out = capsys.readouterr().out
    assert "atlas: 4 rows from 2 studies; atlas.md, atlas.png" in out
    text = (root / "atlas.md").read_text()
    assert "| study | group | attention | dataset | backbone | regime | seed blocks | metric | p1 × mask | " \
           "p2 × mask | p3 × mix | p4 × near_identity |" in text
    delta, low, high, *_ = expected(ALPHA_32["p2"], ALPHA_32["none"])
    assert f"{delta:.2f} [{low:.2f}, {high:.2f}] ≠".replace("-", "−") in text
    assert (root / "atlas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(root.glob("*/summary.md"))  # the studies' own reports are not written


def test_a_root_that_cannot_be_written_ends_in_one_line(root, capsys):
    (root / "atlas.md" / "in the way").mkdir(parents=True)
    assert main(["atlas", str(root)]) == 2
    assert capsys.readouterr().err == f"attnplace: error: cannot write the results folder {root}: Is a directory\n"
    assert main(["atlas", str(root / "missing")]) == 2


def test_other_placement_options_are_rows_of_their_own(tmp_path):
    """p3c at two lambda_init values: two rows, never one averaged cell."""
    axes = ("model.pattern", "model.lambda_init", "seed")
    recs = []
    for pattern, lam, accs in (("none", None, [0.70, 0.71, 0.72]), ("p3c", 0.1, [0.69, 0.70, 0.72]),
                               ("p3c", 0.5, [0.60, 0.62, 0.61])):
        for seed, acc in enumerate(accs):
            rec = study_record(pattern, seed, acc, attention="none" if pattern == "none" else "se")
            rec["config"]["model"]["lambda_init"] = lam
            rec["axes"] = {"model.pattern": pattern, "model.lambda_init": lam, "seed": seed}
            rec["id"] += f"-l{lam}"
            recs.append(rec)
    write_runs(tmp_path / "lam", recs, {a: [] for a in axes})
    atlas, _ = load_atlas(tmp_path)
    assert atlas.rows["options"].tolist() == ["lambda_init=0.1", "lambda_init=0.5"]
    assert atlas.cells["cell"].tolist() == ["p3 × mix", "p3 × mix"]
    assert atlas.cells["delta_pp"].tolist() == pytest.approx([-0.667, -10.0], abs=1e-3)


def test_two_variants_of_one_cell_are_never_averaged(tmp_path):
    """p4 with gate=mask and p4 with p4_gate=direct are both p4 × mask: the first holds the cell, the other is
    named."""
    axes = ("model.pattern", "model.gate", "model.p4_gate", "seed")
    recs = []
    for gate, p4_gate, accs in ((None, None, [0.70, 0.71, 0.72]), ("mask", None, [0.69, 0.70, 0.70]),
                                (None, "direct", [0.60, 0.61, 0.62])):
        for seed, acc in enumerate(accs):
            rec = study_record("none" if gate is p4_gate else "p4", seed, acc, gate=gate)
            rec["config"]["model"]["p4_gate"] = p4_gate
            rec["axes"] = {"model.pattern": rec["config"]["model"]["pattern"], "model.gate": gate,
                           "model.p4_gate": p4_gate, "seed": seed}
            rec["id"] += f"-{p4_gate}"
            recs.append(rec)
    write_runs(tmp_path / "p4", recs, {a: [] for a in axes})
    atlas, _ = write_atlas(tmp_path)
    (cell,) = atlas.cells.itertuples(index=False)
    assert (cell.cell, cell.variant) == ("p4 × mask", "p4/p4_gate=direct")  # the report lists it first
    assert cell.delta_pp == pytest.approx(-10.0)  # its own runs, not an average with p4/gate=mask (-1.33)
    assert atlas.rows["notes"].tolist() == ["p4/gate=mask kept out: the same cell (p4 × mask) as p4/p4_gate=direct"]
    assert "## Kept out of the cells" in (tmp_path / "atlas.md").read_text()


def test_gate_forms_and_places_come_from_the_pattern_classes():
    assert [where_and_how(p, {}) for p in ("none", "p1", "p3c", "p4", "skip_only", "flat")] == [
        None, ("p1", "mask"), ("p3", "mix"), ("p4", "near_identity"), ("skip_only", "mask"), None]
    assert where_and_how("p4", {"p4_gate": "direct"}) == ("p4", "mask")  # a record from before the gate axis
    assert where_and_how("p2", {"gate": "mix"}) == ("p2", "mix")
    assert cell_of({"model.pattern": "p2", "model.gate": "near_identity"}, {"gate": "mix"}) == ("p2", "near_identity")
    assert CELLS[:3] == ("p1 × mask", "p1 × near_identity", "p1 × mix") and "skip_only × mask" in CELLS
    assert build_atlas({"broken": ValueError("runs differ in data.path")}).left_out["reason"].tolist() == \
        ["its report cannot be built: runs differ in data.path"]

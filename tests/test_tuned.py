"""The tuned comparison (report/tuned.py): hand-written records at three learning rates, with known choices on
the choose blocks, the confirm blocks kept apart, the tie rule and the edge flag; the refusals are one line."""

import json

import pytest
from record_fixtures import lr_grid, lr_records, write_runs

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report.atlas import build_atlas
from attnplace.report.build import build_report, write_report

LRS = (0.05, 0.1, 0.2)
LEAK = 0.99  # the test accuracy of every run the confirmation must not read
# Validation accuracy on the choose blocks 0-2 (the same on each), then on the confirm blocks 3-4, where it would
# choose otherwise: none is best at 0.1 (inside the grid), p1 at 0.05 (its edge), p2 ties 0.1 and 0.2.
CHOOSE_VAL = {"none": (0.80, 0.85, 0.82), "p1": (0.86, 0.84, 0.80), "p2": (0.70, 0.78, 0.78)}
CONFIRM_VAL = {"none": (0.90, 0.10, 0.10), "p1": (0.10, 0.10, 0.90), "p2": (0.10, 0.10, 0.90)}
# Test accuracy on the confirm blocks 3-4, at each variant's choice.
CONFIRMED = {("none", 0.1): (0.90, 0.91), ("p1", 0.05): (0.92, 0.94), ("p2", 0.1): (0.85, 0.86)}


def study(tmp_path, failed=None):
    """Five complete seed blocks of none, p1 and p2 at three learning rates; `failed` = (pattern, lr, seed) ended
    as a divergence."""
    test, val = {}, {}
    for pattern in CHOOSE_VAL:
        for i, lr in enumerate(LRS):
            test[(pattern, lr)] = [LEAK, LEAK, LEAK, *CONFIRMED.get((pattern, lr), (LEAK, LEAK))]
            val[(pattern, lr)] = [CHOOSE_VAL[pattern][i]] * 3 + [CONFIRM_VAL[pattern][i]] * 2
    records = lr_records(test, val)
    for rec in records:
        config = rec["config"]
        if failed and (config["model"]["pattern"], config["optim"]["lr"], config["seed"]) == failed:
            rec.update(status="failed", metrics=None, error="loss is NaN", failed_epoch=3)
    return write_runs(tmp_path, records, {**lr_grid(LRS), "seed": [0, 1, 2, 3, 4]})


def test_each_variant_is_confirmed_on_other_blocks_at_the_value_it_chose(tmp_path):
    tuned = write_report(study(tmp_path), tune="optim.lr", choose_on=(0, 1, 2)).tuned
    choices = tuned.choices.set_index("variant")
    assert choices["chosen"].to_dict() == {"none": 0.1, "p1": 0.05, "p2": 0.1}  # p2's tie goes to the smaller lr
    assert choices["edge"].to_dict() == {"none": False, "p1": True, "p2": False}
    assert choices.loc["p1", "chosen_val_mean"] == pytest.approx(0.86)
    assert (tuned.choose_on, tuned.confirm_on) == ((0, 1, 2), (3, 4))
    summary = tuned.summary.set_index("variant")
    assert list(summary.index) == ["none", "p1", "p2"]
    assert summary["n"].tolist() == [2, 2, 2] and summary["metric"].eq("test_acc").all()
    assert summary.loc["none", "acc_mean"] == pytest.approx(0.905)  # no LEAK: only blocks 3-4, only the choices
    assert summary.loc["p1", "diff"] == pytest.approx(((0.92 - 0.90) + (0.94 - 0.91)) / 2)
    assert summary.loc["p2", "diff"] == pytest.approx(((0.85 - 0.90) + (0.86 - 0.91)) / 2)
    assert summary.loc["p1", "n_pairs"] == 2


def test_a_value_that_diverged_on_a_choose_block_cannot_be_chosen(tmp_path):
    tuned = write_report(study(tmp_path, failed=("p1", 0.05, 1)), tune="optim.lr", choose_on=(0, 1, 2)).tuned
    choices = tuned.choices.set_index("variant")
    assert choices.loc["p1", "chosen"] == 0.1 and not choices.loc["p1", "edge"]
    assert choices.loc["p1", "scores"] == "0.1: 84.00, 0.2: 80.00"


def test_the_report_writes_the_choices_and_the_confirmed_table(tmp_path, capsys):
    assert main(["report", str(study(tmp_path)), "--tune", "optim.lr", "--choose-on", "0,1,2"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr chosen per variant on val acc of seed blocks 0, 1, 2" in out
    assert "p1: 0.05 (val 86.00 %; at the grid's edge: the best lr may lie outside it)" in out
    assert max(map(len, out.splitlines())) <= 120
    text = (tmp_path / "summary.md").read_text()
    assert "## Each variant at its own optim.lr (tuned.csv)" in text
    tuned_csv = (tmp_path / "tuned.csv").read_text().splitlines()
    assert tuned_csv[0].startswith("variant,chosen,chosen_val_mean,edge,") and len(tuned_csv) == 4


@pytest.mark.parametrize("settings, message", [
    ({"tune": "optim.wd", "choose_on": (0, 1, 2)},
     r"^report.tune: 'optim.wd' is no axis this report varies outside the placement; valid: optim.lr$"),
    ({"tune": "model.pattern", "choose_on": (0, 1, 2)},
     r"^report.tune: 'model.pattern' is a placement axis, whose variants each group compares already; "
     r"valid: optim.lr$"),
    ({"tune": "optim.lr", "choose_on": (0, 7)},
     r"^report.choose_on: seed 7 is no counted seed block of this report; valid: 0, 1, 2, 3, 4$"),
    ({"tune": "optim.lr"}, r"^tune='optim.lr' needs choose_on: the seed blocks that choose, e.g. \[0, 1, 2\]$"),
    ({"choose_on": (0, 1)}, r"^choose_on=\(0, 1\) needs tune: the axis whose value each variant chooses"),
])
def test_a_bad_tune_is_one_line_naming_the_key_and_what_is_valid(tmp_path, settings, message):
    with pytest.raises(UserError, match=message):
        write_report(study(tmp_path), **settings)


def test_tune_refuses_records_without_validation_accuracy(tmp_path):
    folder = study(tmp_path)
    for path in folder.glob("runs/*/record.json"):
        record = json.loads(path.read_text())
        record["metrics"]["val_acc"] = None
        path.write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"^report.tune chooses on val_acc, which no completed run of seed blocks "
                                        r"0, 1, 2 recorded; valid: runs trained with data.val_size > 0$"):
        write_report(folder, tune="optim.lr", choose_on=(0, 1, 2))


def test_the_atlas_shows_the_tuned_row_beside_the_shared_lr_rows(tmp_path):
    folder = study(tmp_path / "lr_study")
    grid = json.loads((folder / "grid.json").read_text())
    (folder / "grid.json").write_text(json.dumps({**grid, "report": {"tune": "optim.lr", "choose_on": [0, 1, 2]}}))
    atlas = build_atlas({"lr_study": build_report(folder)})
    assert atlas.rows["group"].tolist() == ["lr=0.05", "lr=0.1", "lr=0.2", "tuned lr"]
    tuned_row = atlas.rows.iloc[3]
    assert tuned_row["metric"] == "test_acc" and tuned_row["seed_blocks"] == 2 and tuned_row["baseline"] == "none"
    cells = atlas.cells[atlas.cells["row"] == tuned_row["row"]].set_index("variant")
    assert cells.loc["p1", "delta_pp"] == pytest.approx(100 * ((0.92 - 0.90) + (0.94 - 0.91)) / 2)
    assert cells.loc["p2", "cell"] == "p2 × mask" and cells.loc["p2", "n_pairs"] == 2

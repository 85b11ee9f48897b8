"""The grid's W&B summary run, read back from the offline run: tables with one row per variant, and the plots."""

import json

import pytest

from attnplace.cli import main
from conftest import wandb_records
from record_fixtures import gates, masks, record, write_runs


@pytest.fixture
def grid_results(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    recs = []
    for pattern, accs in (("none", [0.80, 0.82, 0.81]), ("p1", [0.83, 0.84, 0.82]), ("p4", [0.85, 0.83, 0.84])):
        for seed, acc in enumerate(accs):
            rec = record(pattern, seed, acc, history=[{"epoch": 0, "gates": gates(0.1, 0.2, 0.3),
                                                        "masks": masks(0.5, 0.9)}])
            rec["config"].update(name="ablation", wandb={"project": "attnplace-test", "mode": "offline"})
            recs.append(rec)
    return write_runs(tmp_path, recs, {"model.pattern": [], "model.attention": [], "seed": []})


def test_report_wandb_logs_the_summary_run(grid_results, capsys):
    assert main(["report", str(grid_results), "--wandb", "--factorial", "model.pattern"]) == 0
    assert "W&B summary run:" in capsys.readouterr().out
    records = list(wandb_records(grid_results))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_group, run.job_type) == ("attnplace-test", "ablation", "summary")
    logged = {}  # media arrive as nested keys: ("summary", "path") -> logged["summary"]["path"]
    for item in (i for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item):
        if len(item.nested_key) == 2:
            logged.setdefault(item.nested_key[0], {})[item.nested_key[1]] = json.loads(item.value_json)
    assert {logged[name]["_type"] for name in ("summary", "pairs", "omnibus", "factorial", "masks_mean")} == \
        {"table-file"}
    images = ("accuracy", "pairs_matrix", "factorial_interaction", "gates", "masks")
    assert {logged[name]["_type"] for name in images} == {"image-file"}
    files = next(grid_results.glob("wandb/offline-run-*/files"))
    summary = json.loads((files / logged["summary"]["path"]).read_text())
    variants = [row[summary["columns"].index("variant")] for row in summary["data"]]
    assert variants == ["none", "p1/se", "p4/se"]  # baseline first, then the grid's order
    assert {"acc_mean", "diff_ci_low", "p_holm", "effect", "effect_kind", "n_pairs", "tost_p", "verdict",
            "mean_rank"} <= set(summary["columns"])
    pairs = json.loads((files / logged["pairs"]["path"]).read_text())
    assert len(pairs["data"]) == 3 and {"a", "b", "diff", "p_holm", "verdict"} <= set(pairs["columns"])
    runs = json.loads((files / logged["runs"]["path"]).read_text())
    assert len(runs["data"]) == 9 and "test_acc" in runs["columns"]
    assert (files / logged["accuracy"]["path"]).read_bytes()[:4] == b"\x89PNG"

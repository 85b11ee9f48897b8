"""Tiny grids for tests that run them: written to disk, then compared run by run."""

import json
from pathlib import Path

import yaml

from conftest import comparable

TINY_BASE = {
    "data": {"name": "synthetic", "path": None, "val_size": 100, "batch_size": 50, "augment": "none",
             "synthetic": {"num_train": 400, "num_test": 100, "image_size": 16}},
    "trainer": {"max_epochs": 3, "progress_bar": False, "deterministic": True, "threads": 1},
    "optim": {"lr": 0.05, "warmup_epochs": 0},
}


def write_grid(tmp_path: Path, axes: dict, name="g", exclude=None, base=TINY_BASE) -> Path:
    spec = {"name": name, "base": {**base, "output_dir": str(tmp_path / "out")}, "axes": axes}
    if exclude:
        spec["exclude"] = exclude
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def records(results_dir: Path) -> dict[str, dict]:
    found = [json.loads(p.read_text()) for p in sorted(results_dir.glob("runs/*/record.json"))]
    by_id = {r["id"]: r for r in found}
    assert len(by_id) == len(found)  # every run recorded once
    return by_id


AXES = {"model.pattern": ["none", "p1", "p4"], "seed": [0]}


def same_runs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for run_id in a:
        assert b[run_id]["status"] == "completed"
        assert comparable(b[run_id]["history"]) == comparable(a[run_id]["history"])
        assert b[run_id]["metrics"]["test_acc"] == a[run_id]["metrics"]["test_acc"]

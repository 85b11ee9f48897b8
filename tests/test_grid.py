"""Grids: expansion and ids, dry run, failures, kill-and-rerun, and Ray giving the same records as local."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.grid.runner import dry_run_table
from attnplace.grid.spec import load_grid
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


def test_expansion_exclude_canonical_and_stable_ids(tmp_path):
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1", "p4"], "model.attention": ["se", "cbam"],
                                 "seed": [0, 1]}, exclude=[{"model.pattern": "p4", "model.attention": ["cbam"]}])
    grid = load_grid(path)
    # none collapses over attention (2 seeds), p1 keeps both (4), p4 only se (2)
    assert len(grid.runs) == 8
    combos = sorted((r.axes["model.pattern"], r.axes["model.attention"], r.axes["seed"]) for r in grid.runs)
    assert combos[:2] == [("none", "none", 0), ("none", "none", 1)]
    assert ("p4", "cbam", 0) not in combos and ("p1", "cbam", 1) in combos
    assert [r.id for r in load_grid(path).runs] == [r.id for r in grid.runs]
    assert len({r.id for r in grid.runs}) == 8
    assert all(Path(r.config.run_dir) == tmp_path / "out" / "g" / "runs" / r.id for r in grid.runs)
    assert load_grid(path, ["optim.lr=0.2"]).runs[0].id != grid.runs[0].id  # overrides reach every run


def test_dry_run_lists_runs_and_their_status(tmp_path, capsys):
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0]})
    grid = load_grid(path)
    done = grid.runs[1]
    Path(done.config.run_dir).mkdir(parents=True)
    (Path(done.config.run_dir) / "record.json").write_text(json.dumps({"status": "completed"}))
    assert main(["grid", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "status", "model.pattern", "seed"]
    assert lines[1].split() == [grid.runs[0].id, "new", "none", "0"]
    assert lines[2].split() == [done.id, "completed", "p1", "0"]
    assert not (tmp_path / "out" / "g" / "grid.json").exists()  # a dry run trains and writes nothing
    assert dry_run_table(grid) == "\n".join(lines)


@pytest.mark.parametrize("spec,message", [
    ({"axes": {"model.patern": ["p1"]}}, "unknown key 'model.patern'"),
    ({"axes": {"model.pattern": ["p1"]}, "exclude": [{"seed": 0}]}, "exclude rule key 'seed' is not an axis"),
    ({"axes": {"model.pattern": "p1"}}, "axes must map config keys to non-empty lists"),
    ({"axis": {}}, "unknown key 'axis'; valid: name, base, axes, exclude"),
])
def test_bad_grid_files_give_one_line_errors(tmp_path, spec, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match=message):
        load_grid(path)


def test_failing_run_is_recorded_and_the_grid_goes_on(tmp_path, capsys):
    path = write_grid(tmp_path, {"model.pattern": ["p1"], "optim.lr": [0.05, 1.0e30]}, name="fail")
    assert main(["grid", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1/2 runs completed, 1 failed (rerun with --retry-failed)" in out
    by_lr = {r["config"]["optim"]["lr"]: r for r in records(tmp_path / "out" / "fail").values()}
    assert by_lr[0.05]["status"] == "completed"
    assert by_lr[1e30]["status"] == "failed" and "loss became" in by_lr[1e30]["error"]
    summary = pd.read_csv(tmp_path / "out" / "fail" / "summary.csv")
    assert sorted(summary["failures"]) == [0, 1]
    # Failed runs stay failed unless asked: a rerun has nothing to do, --retry-failed runs it again.
    assert main(["grid", str(path)]) == 1
    assert "0 to run" in capsys.readouterr().out
    assert main(["grid", str(path), "--retry-failed"]) == 1
    assert "1 to run" in capsys.readouterr().out


AXES = {"model.pattern": ["none", "p1", "p4"], "seed": [0]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A tiny grid run straight through, locally: the reference for kill-and-rerun and for Ray."""
    tmp = tmp_path_factory.mktemp("reference")
    path = write_grid(tmp, AXES, name="tiny")
    assert main(["grid", str(path)]) == 0
    return records(tmp / "out" / "tiny"), pd.read_csv(tmp / "out" / "tiny" / "summary.csv")


def _same_runs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for run_id in a:
        assert b[run_id]["status"] == "completed"
        assert comparable(b[run_id]["history"]) == comparable(a[run_id]["history"])
        assert b[run_id]["metrics"]["test_acc"] == a[run_id]["metrics"]["test_acc"]


def test_grid_killed_mid_run_and_rerun_finishes_the_same(tmp_path, uninterrupted):
    path = write_grid(tmp_path, AXES, name="tiny")
    results = tmp_path / "out" / "tiny"
    command = [sys.executable, "-m", "attnplace.cli", "grid", str(path)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:  # SIGKILL once the second run has a checkpoint, i.e. in mid-training
        done = [json.loads(p.read_text()) for p in results.glob("runs/*/record.json")]
        if len(done) >= 2 and any(r["status"] == "running" and r["history"] for r in done):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = records(results)
    assert any(r["status"] == "running" for r in killed.values()), "the kill came too late to test anything"

    subprocess.run(command, check=True, capture_output=True)
    reference, reference_summary = uninterrupted
    _same_runs(reference, records(results))
    summary = pd.read_csv(results / "summary.csv")
    pd.testing.assert_series_equal(summary["acc_mean"], reference_summary["acc_mean"])


def test_ray_launcher_gives_the_same_records_as_local(tmp_path, uninterrupted):
    pytest.importorskip("ray")
    path = write_grid(tmp_path, AXES, name="tiny")
    assert main(["grid", str(path), "--launcher", "ray", "--workers", "2"]) == 0
    _same_runs(uninterrupted[0], records(tmp_path / "out" / "tiny"))

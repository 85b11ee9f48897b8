"""Grids: expansion and ids, dry run, bad grid files, failures, a grid stopped by a setup error or an unwritable
folder, a bf16 grid on a CPU without bf16, a run another call trains, and the committed grid files and results.
Workers, kill-and-rerun and Ray are in test_grid_workers.py."""

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.grid import runner
from attnplace.run.calls import read_calls
from attnplace.grid.seed_blocks import read_blocks, schedule
from attnplace.grid.runner import dry_run_table, plan, run_status
from attnplace.grid.spec import load_grid
from attnplace.run.environment import cpu_model
from attnplace.run.result import RunResult
from grids import TINY_BASE, records, write_grid


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
    assert lines[:2] == ["blocks: 0 of 1 wanted complete", "  to start here: seed 0"]
    assert lines[2].split() == ["id", "status", "here", "model.pattern", "seed"]
    assert lines[3].split() == [grid.runs[0].id, "new", "train", "none", "0"]
    assert lines[4].split() == [done.id, "completed", "-", "p1", "0"]
    assert not (tmp_path / "out" / "g" / "grid.json").exists()  # a dry run trains and writes nothing
    assert dry_run_table(schedule(grid, [cpu_model()])) == "\n".join(lines)


@pytest.mark.parametrize("spec,message", [
    ({"axes": {"model.patern": ["p1"]}}, "unknown key 'model.patern'"),
    ({"axes": {"model.pattern": ["p1"]}, "exclude": [{"seed": 0}]}, "exclude rule key 'seed' is not an axis"),
    ({"axes": {"model.pattern": "p1"}}, "axes must map config keys to non-empty lists"),
    ({"axis": {}}, "unknown key 'axis'; valid: name, base, axes, exclude"),
    ({"base": ["model.pattern=p1"], "axes": {"seed": [0]}}, "base must be a mapping of config sections"),
    ({"name": 7, "axes": {"seed": [0]}}, "name=7: expected text"),
])
def test_bad_grid_files_give_one_line_errors(tmp_path, spec, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match=message):
        load_grid(path)


def test_failing_run_is_recorded_and_the_grid_goes_on(tmp_path, capsys, workers_started):
    path = write_grid(tmp_path, {"model.pattern": ["p1"], "optim.lr": [1.0e30, 0.05]}, name="fail")
    assert main(["grid", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1/2 runs completed, 1 failed (rerun with --retry-failed)" in out
    assert workers_started == [None]  # the NaN run first, then the good one, in the same worker process
    by_lr = {r["config"]["optim"]["lr"]: r for r in records(tmp_path / "out" / "fail").values()}
    assert by_lr[0.05]["status"] == "completed"
    assert by_lr[1e30]["status"] == "failed" and "loss became" in by_lr[1e30]["error"]
    assert f"{by_lr[1e30]['id']}: failed: loss became" in out  # the progress line says why
    status = json.loads((tmp_path / "out" / "fail" / "status.json").read_text())
    assert status == {by_lr[1e30]["id"]: {"status": "failed", "error": by_lr[1e30]["error"]},
                      by_lr[0.05]["id"]: {"status": "completed", "error": None}}
    summary = pd.read_csv(tmp_path / "out" / "fail" / "summary.csv")
    assert sorted(summary["failures"]) == [0, 1]
    # Failed runs stay failed unless asked: a rerun has nothing to do, --retry-failed runs it again.
    assert main(["grid", str(path)]) == 1
    assert "0 to run" in capsys.readouterr().out
    assert main(["grid", str(path), "--retry-failed"]) == 1
    assert "1 to run" in capsys.readouterr().out
    # Each call left its line: the command as typed, what it ran and how it ended; the report lists them.
    calls = read_calls(tmp_path / "out" / "fail")
    assert [c["command"] for c in calls] == [f"attnplace grid {path}"] * 2 + [f"attnplace grid {path} --retry-failed"]
    assert [(c["to_run"], c["completed"], c["failed"], c["outcome"]) for c in calls] == [
        (2, 1, 1, "finished"), (0, 1, 1, "finished"), (1, 1, 1, "finished")]
    assert calls[0]["wall_s"] > 0 and all(c["device"] and c["workers"] == 1 for c in calls)
    summary_md = (tmp_path / "out" / "fail" / "summary.md").read_text()
    assert summary_md.count(f"- `attnplace grid {path}") == 3 and "3 calls, " in summary_md


def test_setup_error_stops_the_grid_with_one_line(tmp_path, capsys, workers_started):
    """Data that cannot be read fails every run before training: the grid stops after its first 2 runs
    and says why once; the progress lines and status.json carry the error, and a rerun retries them."""
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)  # present but empty: no download tried
    base = {**TINY_BASE, "data": {"name": "cifar10", "path": str(tmp_path / "data")}}
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1", "p4"]}, name="nodata", base=base)
    assert main(["grid", str(path)]) == 2
    out, err = capsys.readouterr()
    message = f"dataset 'cifar10': {tmp_path / 'data' / 'cifar-10-batches-py' / 'data_batch_1'} is missing"
    assert err.startswith(f"attnplace: error: {message}") and err.count("\n") == 1
    assert err.rstrip().endswith("(the first 2 runs failed on it; grid stopped)")
    assert " ".join(out.split()).count(f": failed: {message}") == 2  # progress lines wrap at 120 columns
    assert workers_started == [None]  # the worker survived the first run's exception and took the second
    grid = load_grid(path)
    status = json.loads((tmp_path / "out" / "nodata" / "status.json").read_text())
    assert [s["status"] for s in status.values()] == ["failed", "failed", "new"]  # the third never started
    assert all(s["error"].startswith(message) for s in list(status.values())[:2])
    failed = records(tmp_path / "out" / "nodata")
    assert [(r["status"], r["failed_epoch"]) for r in failed.values()] == [("failed", None)] * 2
    assert len(plan(grid)) == 3  # failed before training: the next run of the grid tries them again
    (call,) = read_calls(tmp_path / "out" / "nodata")
    assert call["outcome"].startswith(f"stopped: {message}") and call["outcome"].endswith("grid stopped)")
    assert (call["to_run"], call["completed"], call["failed"]) == (3, 0, 2)


def test_an_unwritable_run_folder_stops_the_grid_with_one_line(tmp_path, capsys):
    """`runs` is a file, so no run folder can be made (a read-only or full disk fails the same way, and so for
    root too): the grid stops before its first run with one line naming the folder, and its call is recorded."""
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"]}, name="nodisk")
    (tmp_path / "out" / "nodisk").mkdir(parents=True)
    (tmp_path / "out" / "nodisk" / "runs").write_text("not a folder")
    first = load_grid(path).runs[0].config.resolved_run_dir()
    assert main(["grid", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"attnplace: error: cannot write the run folder {first}: Not a directory\n"
    (call,) = read_calls(tmp_path / "out" / "nodisk")
    assert call["outcome"] == f"stopped: cannot write the run folder {first}: Not a directory"
    (tmp_path / "out" / "elsewhere").write_text("not a folder either")
    grid = write_grid(tmp_path, {"model.pattern": ["none"]}, name="elsewhere")
    assert main(["grid", str(grid)]) == 2
    assert capsys.readouterr().err == (f"attnplace: error: cannot write the results folder "
                                       f"{tmp_path / 'out' / 'elsewhere'}: File exists\n")


def test_a_bf16_grid_on_a_cpu_without_native_bf16_is_refused_in_one_line_unless_insisted(tmp_path, capsys,
                                                                                          monkeypatch):
    import attnplace.grid.runner

    base = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 1, "precision": "bf16-mixed",
                                     "accelerator": "cpu"}}
    path = write_grid(tmp_path, {"model.pattern": ["none"], "seed": [0]}, name="bf16", base=base)
    monkeypatch.setattr(attnplace.grid.runner, "cpu_has_bf16", lambda: False)
    assert main(["grid", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnplace: error: grid bf16 trains trainer.precision=bf16-mixed on this CPU (")
    assert err.endswith("valid: a CPU with native bf16, trainer.precision=32-true, or --allow-emulated-bf16\n")
    assert err.count("\n") == 1 and not (tmp_path / "out" / "bf16").exists()  # refused before anything is written
    assert main(["grid", str(path), "--allow-emulated-bf16"]) == 0
    (record,) = records(tmp_path / "out" / "bf16").values()
    assert record["status"] == "completed" and record["config"]["trainer"]["precision"] == "bf16-mixed"


def test_a_second_call_names_the_run_another_call_trains_and_does_not_call_it_stopped(tmp_path, capsys):
    """While one call trains a run (it holds the run's lock, and its record names its host and pid), a second call
    of the grid trains the rest, names that run as trained elsewhere, and ends with status 0: nothing failed."""
    import fcntl

    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0, 1]}, name="twice")
    run = load_grid(path).runs[1]  # seed 0's p1
    busy = run.config.resolved_run_dir()
    busy.mkdir(parents=True)
    (busy / "record.json").write_text(json.dumps({  # as the first call's worker wrote it when training began
        "id": run.id, "grid": "twice", "status": "running", "axes": run.axes, "config": run.config.to_dict(),
        "run_dir": str(busy), "history": [], "sessions": [{"host": "other-host", "pid": 4242}]}))
    with open(busy / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what the first call's worker holds while it trains the run
        assert main(["grid", str(path)]) == 0
        out = " ".join(capsys.readouterr().out.split())  # prose is wrapped at 120 columns
    who = "being trained by another call (host other-host, pid 4242)"
    assert f"[2/4] done 1, failed 0, elsewhere 1, left 2 | {busy.name}: {who}" in out
    assert f"{who.replace('call (', 'call (not counted): ' + busy.name + ' (')}" in out  # the report's note
    assert "stopped mid-training" not in out
    assert "3/4 runs completed, 0 failed, 1 being trained by another call;" in out
    (call,) = read_calls(tmp_path / "out" / "twice")
    assert (call["completed"], call["failed"], call["elsewhere"]) == (3, 0, 1)


def test_runs_that_fail_on_one_cause_stop_the_grid_though_their_messages_differ():
    """Each run's unwritable folder has its own message, but one cause: the disk under them."""
    folders = [RunResult(i, "running", f"cannot write the run folder runs/{i}: No space left on device",
                         "cannot write the run folders in runs: No space left on device", user_error=True)
               for i in "ab"]
    assert runner.shared_user_error(folders) == "cannot write the run folders in runs: No space left on device"
    assert runner.shared_user_error([folders[0], replace(folders[1], cause="another")]) is None
    old = [RunResult.from_json('{"id": "a", "status": "failed", "user_error": true, "error": "data missing"}')] * 2
    assert runner.shared_user_error(old) == "data missing"  # workers from before causes were reported
    assert runner.shared_user_error([old[0], replace(old[1], user_error=False)]) is None


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("grid_file", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_committed_grid_files_load(grid_file):
    assert load_grid(grid_file).runs


# Studies that take more than one sitting: their completed runs are committed as they come in (the rest have
# no record yet, or are training here right now). Every other committed folder is a finished grid.
UNDER_WAY = {"integration_cpu"}


@pytest.mark.parametrize("results", sorted(p.parent for p in (ROOT / "results").glob("*/grid.json")),
                         ids=lambda p: p.name)
def test_committed_results_are_their_grid_files_runs_all_recorded(results, monkeypatch):
    """A committed table is what its grid file gives today: the same run ids (so the same configs) as the list
    grid.json keeps, which only grows (replacement seeds' blocks included), and as many complete seed blocks as
    the grid wants. Runs outside complete blocks belong to partial blocks (new, or stopped mid-training on other
    hardware). A changed default or grid file that would silently change the runs fails here."""
    monkeypatch.chdir(ROOT)  # grid files name data relative to the repository root
    grid = load_grid(ROOT / "experiments" / f"{results.name}.yaml", ["output_dir=results"])
    assert list(grid.describe().runs) == json.loads((results / "grid.json").read_text())["runs"]
    blocks = read_blocks(grid)
    complete = [b for b in blocks if b.complete]
    assert results.name in UNDER_WAY or len(complete) >= grid.wanted
    assert all(run_status(r) == "completed" for b in complete for r in b.runs)
    assert {run_status(r) for b in blocks if not b.complete for r in b.runs} <= {"completed", "new", "running"}

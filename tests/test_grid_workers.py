"""Grid workers: a worker process trains many runs, or one run each (`--workers`, `auto`); the run result
crossing the worker's pipe; a payload refused on other hardware than its seed block's, or run from another
folder as a Ray node runs it; a grid killed mid-run and rerun, and Ray, giving the same records as local."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from attnplace.cli import main
from attnplace.grid import runner
from attnplace.grid.runner import auto_workers, run_status
from attnplace.grid.spec import load_grid
from attnplace.run.calls import read_calls
from attnplace.run.environment import cpu_model
from attnplace.run.result import RunResult
from attnplace.run.sections import TrainerConfig
from grids import AXES, TINY_BASE, records, same_runs, write_grid


def test_a_run_handed_to_other_hardware_than_its_blocks_refuses_in_one_line_unless_mixing_is_allowed(tmp_path):
    """The worker's own guard, for a payload that reaches it anyway (a Ray node, a hand-run payload): its seed
    block trained on another CPU model, so the same config would compute other numbers here. It stops before
    its folder holds a record; allowed, it trains."""
    from attnplace.grid.worker import make_payload, run_payload

    base = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 1}}
    grid = load_grid(write_grid(tmp_path, {"model.pattern": ["none"]}, name="moved", base=base))
    other = "AMD EPYC, torch kernels AVX2" if "EPYC" not in cpu_model() else "Intel Xeon, torch kernels AVX512"
    result = run_payload(make_payload(grid.runs[0], grid, 1, {"hardware": [other]}))
    assert (result.status, result.user_error) == ("failed", True)
    assert result.error == (
        f"seed 0's block trained on {other}, this machine is {cpu_model()}: the same configs compute other numbers "
        f"on other hardware, so the block's pairs would mix the two; finish the block on the hardware it started "
        f"on, or pass --allow-mixed-environments")
    assert run_status(grid.runs[0]) == "new"
    assert run_payload(make_payload(grid.runs[0], grid, 1, {"hardware": None})).status == "completed"


def test_a_run_another_call_ended_after_this_one_planned_it_is_not_trained_again(tmp_path):
    """Call B planned a run; call A then recorded it failed in training (diverged). B's worker, holding the
    lock at last, reports A's result and leaves the record alone, unless B was asked to --retry-failed."""
    from attnplace.grid.worker import make_payload, run_payload

    base = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 1}}
    grid = load_grid(write_grid(tmp_path, {"model.pattern": ["none"]}, name="ended", base=base))
    run_dir = grid.runs[0].config.resolved_run_dir()
    run_dir.mkdir(parents=True)
    diverged = {"id": grid.runs[0].id, "status": "failed", "error": "loss is NaN", "failed_epoch": 0,
                "metrics": {}, "history": [], "sessions": [{"host": "a", "pid": 1}]}
    (run_dir / "record.json").write_text(json.dumps(diverged))
    result = run_payload(make_payload(grid.runs[0], grid, 1))
    assert (result.status, result.error) == ("failed", "loss is NaN")
    assert json.loads((run_dir / "record.json").read_text()) == diverged
    retried = run_payload(make_payload(grid.runs[0], grid, 1, {"retry_failed": True}))
    assert retried.status == "completed"


def test_a_run_result_crosses_a_worker_pipe_whole_and_reads_an_older_workers_line():
    """The JSON line a worker writes (worker.py `serve`) is what local.py reads back; a worker still running
    older code wrote no `cause` nor `unwritable`."""
    result = RunResult.failed("a", "cannot write the run folder runs/a: No space left on device",
                              cause="cannot write the run folders in runs: No space left on device", user_error=True,
                              unwritable=True)
    assert RunResult.from_json(result.to_json()) == result
    done = RunResult("b", "completed", metrics={"test_acc": 0.5})
    assert RunResult.from_json(done.to_json()) == done
    older = RunResult.from_json('{"id": "c", "status": "failed", "error": "data missing", "metrics": {}, '
                                '"user_error": true}\n')
    assert older == RunResult("c", "failed", "data missing", user_error=True)
    assert (older.cause, older.unwritable) == (None, False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A tiny grid run straight through, locally, its 3 runs one after another in one worker process: the
    reference for one run per process, kill-and-rerun and Ray."""
    tmp = tmp_path_factory.mktemp("reference")
    path = write_grid(tmp, AXES, name="tiny")
    assert main(["grid", str(path)]) == 0
    return records(tmp / "out" / "tiny"), pd.read_csv(tmp / "out" / "tiny" / "summary.csv")


def test_a_worker_per_run_gives_the_same_records_as_one_worker_for_all(tmp_path, uninterrupted, workers_started):
    path = write_grid(tmp_path, AXES, name="tiny")
    assert main(["grid", str(path), "--workers", "3"]) == 0
    assert workers_started == [None] * 3  # 3 runs, 3 processes: each trained one run
    result = records(tmp_path / "out" / "tiny")
    same_runs(uninterrupted[0], result)
    environment = next(iter(result.values()))["environment"]
    preset = TrainerConfig().resolved("cpu")  # the CPU preset of this machine, and what the config records
    assert (environment["precision"], environment["channels_last"], environment["compile"]) == \
        (preset.precision, True, False)
    assert next(iter(result.values()))["config"]["trainer"]["precision"] == preset.precision


def test_workers_auto(monkeypatch):
    monkeypatch.setattr(runner, "visible_gpus", list)
    for cores, workers in ((1, 1), (2, 2), (64, runner.MAX_CPU_WORKERS)):
        monkeypatch.setattr(runner.os, "cpu_count", lambda cores=cores: cores)
        assert auto_workers() == workers
    monkeypatch.setattr(runner, "visible_gpus", lambda: ["0", "1"])
    assert auto_workers() == 2 * runner.RUNS_PER_GPU
    with pytest.raises(SystemExit):
        main(["grid", "g.yaml", "--workers", "0"])


def test_grid_started_with_sigint_ignored_still_stops_on_sigint_and_records_the_call(tmp_path):
    """A grid that a script starts in the background inherits SIGINT ignored; a time limit's SIGINT must still
    stop it as Ctrl-C does: exit 130, one `interrupted` line in calls.jsonl."""
    path = write_grid(tmp_path, AXES, name="tiny")
    results = tmp_path / "out" / "tiny"
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731 (what `cmd &` does)
    proc = subprocess.Popen([sys.executable, "-m", "attnplace.cli", "grid", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    deadline = time.time() + 180
    while time.time() < deadline and not list(results.glob("runs/*/record.json")):  # training has begun
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr.strip().endswith("attnplace: interrupted")
    assert [c["outcome"] for c in read_calls(results)] == ["interrupted"]


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
    finished = records(results)
    same_runs(reference, finished)
    # The record lists both training sessions of the killed run; the second resumed from its last.ckpt,
    # which is the record's last epoch or, killed between the two writes, the one before.
    (cut,) = [r for r in killed.values() if r["status"] == "running"]
    assert [len(r["sessions"]) for r in finished.values()] == [2 if i == cut["id"] else 1 for i in finished]
    assert finished[cut["id"]]["sessions"][1]["from_epoch"] in (len(cut["history"]) - 1, len(cut["history"]))
    summary = pd.read_csv(results / "summary.csv")
    pd.testing.assert_series_equal(summary["acc_mean"], reference_summary["acc_mean"])


def test_ray_launcher_gives_the_same_records_as_local(tmp_path, uninterrupted):
    pytest.importorskip("ray")
    path = write_grid(tmp_path, AXES, name="tiny")
    assert main(["grid", str(path), "--launcher", "ray", "--workers", "2"]) == 0
    same_runs(uninterrupted[0], records(tmp_path / "out" / "tiny"))


def test_a_payload_runs_in_the_grids_folder_with_its_relative_data_path(tmp_path, monkeypatch):
    """What a Ray worker on another node does: it starts in some other folder, and the run's relative
    data path and run folder still mean what they meant where the grid started."""
    from attnplace.grid.worker import run_payload
    from attnplace.run.config import load_config
    from dataset_files import image_tree, write_tree

    write_tree(tmp_path / "grid" / "images", image_tree(classes=("ant", "bee"), per_class=6, size=(8, 8)))
    monkeypatch.chdir(tmp_path / "grid")
    monkeypatch.setenv("ATTNPLACE_CACHE", str(tmp_path / "cache"))
    config = load_config(None, ["data.name=imagefolder", "data.path=images", "data.val_size=4", "data.batch_size=4",
                                "trainer.max_epochs=1", "trainer.progress_bar=false", "optim.warmup_epochs=0",
                                "run_dir=out/run"])
    payload = {"config": config.to_dict(), "grid": "g", "axes": {}, "cwd": str(tmp_path / "grid")}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert run_payload(payload).status == "completed"
    assert (tmp_path / "grid" / "out" / "run" / "record.json").exists()

    gone = run_payload({**payload, "cwd": str(tmp_path / "gone")})
    assert (gone.id, gone.status, gone.user_error) == ("run", "failed", True)
    assert gone.error.startswith(f"the grid's folder {tmp_path / 'gone'} does not exist on ")

"""A local worker lost mid-run (the OOM killer's SIGKILL): its run is handed to a fresh worker in the same
call and resumes from its `last.ckpt`; a run that kills its worker every try is recorded as failed."""

import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from attnplace.grid import local, runner
from attnplace.grid.spec import load_grid
from attnplace.run.record import read_record
from grids import records, same_runs, write_grid

AXES = {"model.pattern": ["none", "p1"], "seed": [0]}


def remember_workers(monkeypatch) -> list:
    """The workers the local launcher starts from here on, in the order started."""
    started = []

    class Remembered(local.Worker):
        def __init__(self, gpu):
            super().__init__(gpu)
            started.append(self)

    monkeypatch.setattr(local, "Worker", Remembered)
    return started


def kill_mid_run(results: Path, workers: list, killed: list, done: threading.Event) -> None:
    """SIGKILL the newest worker once a run's record is `running` with an epoch of history, and note that
    record in `killed`: a worker lost in mid-training, after its first checkpoint. Gives up when `done`."""
    while not done.is_set():
        for path in results.glob("runs/*/record.json"):
            if (record := read_record(path)) and record["status"] == "running" and record["history"]:
                os.kill(workers[-1].proc.pid, signal.SIGKILL)
                killed.append(record)
                return
        time.sleep(0.01)


def test_a_worker_killed_mid_run_is_retried_in_the_same_call(tmp_path, monkeypatch):
    (tmp_path / "reference").mkdir()
    reference = write_grid(tmp_path / "reference", AXES, name="tiny")
    assert runner.run_grid(load_grid(reference), echo=lambda line: None)["completed"] == 2

    workers, killed, lines = remember_workers(monkeypatch), [], []
    grid = load_grid(write_grid(tmp_path, AXES, name="tiny"))
    done = threading.Event()
    killer = threading.Thread(target=kill_mid_run, args=(grid.results_dir, workers, killed, done), daemon=True)
    killer.start()
    counts = runner.run_grid(grid, echo=lines.append)
    done.set()
    killer.join()
    (cut,) = killed
    assert counts == {"runs": 2, "completed": 2, "failed": 0, "elsewhere": 0, "to_run": 2}
    assert len(workers) == 2  # the lost worker was replaced, and the fresh one trained the rest
    progress = [line for line in lines if line.startswith("[")]
    assert progress[0] == (f"[0/2] done 0, failed 0, left 2 | {cut['id']}: worker killed by signal 9; retrying "
                           f"(try 2 of 3)")  # a retry finishes no run
    assert [line.split(" | ")[0] for line in progress[1:]] == ["[1/2] done 1, failed 0, left 1",
                                                              "[2/2] done 2, failed 0, left 0"]

    finished = records(grid.results_dir)
    same_runs(records(tmp_path / "reference" / "out" / "tiny"), finished)
    # Both sessions of the killed run are listed; the second resumed from its last.ckpt, which is the
    # record's last epoch or, killed between the two writes, the one before.
    assert [len(r["sessions"]) for r in finished.values()] == [2 if i == cut["id"] else 1 for i in finished]
    assert finished[cut["id"]]["sessions"][1]["from_epoch"] in (len(cut["history"]) - 1, len(cut["history"]))
    status = json.loads((grid.results_dir / "status.json").read_text())
    assert {s["status"] for s in status.values()} == {"completed"}


def hog(mb: int) -> list[str]:
    """A worker that takes its run, fills `mb` MB and is killed, as the OOM killer would kill it."""
    script = f"import os, sys; sys.stdin.readline(); held = b'x' * {mb} * 2**20; os.kill(os.getpid(), 9)"
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("above_the_grid_mb", [None, 128], ids=["peak unknown", "peak known"])
def test_a_run_that_kills_its_worker_every_try_is_recorded_failed_and_not_retried(tmp_path, monkeypatch,
                                                                                   above_the_grid_mb):
    """Its record, left `running` after an epoch by an earlier session, ends `failed` at the epoch it was in,
    with the cause and, where it exceeds the grid's own (which Linux counts in it), the worker's peak memory;
    a later call leaves it alone."""
    grid = load_grid(write_grid(tmp_path, {"model.pattern": ["p1"]}, name="oom"))
    (run,) = grid.runs
    run_dir = run.config.resolved_run_dir()
    run_dir.mkdir(parents=True)
    earlier = {"id": run.id, "status": "running", "error": None, "failed_epoch": None, "history": [{"epoch": 0}],
               "sessions": [{"host": "here"}]}
    (run_dir / "record.json").write_text(json.dumps(earlier))
    local.visible_gpus()  # imports torch, as the grid does before it forks its workers
    grid_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    held_mb = 0 if above_the_grid_mb is None else grid_mb + above_the_grid_mb
    monkeypatch.setattr(local.Worker, "command", hog(held_mb))
    workers, lines = remember_workers(monkeypatch), []

    counts = runner.run_grid(grid, echo=lines.append)
    assert counts == {"runs": 1, "completed": 0, "failed": 1, "elsewhere": 0, "to_run": 1}
    assert len(workers) == 3
    progress = [line for line in lines if line.startswith("[")]
    assert progress[:2] == [f"[0/1] done 0, failed 0, left 1 | {run.id}: worker killed by signal 9; retrying "
                            f"(try {n} of 3)" for n in (2, 3)]
    assert progress[2].startswith(f"[1/1] done 0, failed 1, left 0 | {run.id}: failed: worker killed by signal 9, "
                                  f"3 times; see {run_dir / 'log.txt'} | ETA ")
    record = read_record(run_dir / "record.json")
    assert {k: record[k] for k in ("status", "error", "failed_epoch", "history")} == {
        "status": "failed", "error": "worker killed by signal 9, 3 times", "failed_epoch": 1,
        "history": [{"epoch": 0}]}
    if above_the_grid_mb is None:
        assert "worker_peak_rss_mb" not in record
    else:
        assert held_mb <= record["worker_peak_rss_mb"] < held_mb + 100
    assert json.loads((grid.results_dir / "status.json").read_text()) == {
        run.id: {"status": "failed", "error": "worker killed by signal 9, 3 times"}}

    assert runner.run_grid(grid, echo=lines.append)["to_run"] == 0  # failed in training: not retried
    assert len(workers) == 3

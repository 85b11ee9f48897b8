"""A disk that fills mid-study: the grid stops at the first run that cannot write its folder, wherever it falls,
with one line; the same command finishes it once there is room; the report's writes end in one line too.

A full disk is simulated without mounts (and so for root too) by what sits in a run's way: a file where its
folder goes (the grid cannot even hand it to a worker) or a folder where its record goes (the worker trains it
and cannot write it)."""

import shutil

import pytest

from attnplace.cli import main
from attnplace.run.calls import read_calls
from attnplace.grid.runner import plan
from attnplace.grid.spec import load_grid
from grids import TINY_BASE, records, write_grid

BASE = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 1}}


def block_folder(run_dir):
    """A file where the run's folder goes: (what is in the way, the OS error, how the message ends)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.write_text("not a folder")
    return run_dir, "File exists", ""


def block_record(run_dir):
    (run_dir / "record.json" / "in the way").mkdir(parents=True)
    return run_dir / "record.json", "Is a directory", " (grid stopped)"


def recorded(results_dir) -> list[str]:
    return sorted(p.parent.name for p in results_dir.glob("runs/*/record.json") if p.is_file())


@pytest.mark.parametrize("obstacle", [block_folder, block_record], ids=["folder", "record"])
def test_a_disk_that_fills_mid_grid_stops_it_at_that_run_with_one_line(tmp_path, capsys, obstacle):
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1", "p2", "p4"]}, name="full", base=BASE)
    grid = load_grid(path)
    order = plan(grid)
    full = order[2].config.resolved_run_dir()  # after 2 runs, wherever the first-runs rule looks no more
    in_the_way, reason, stopped = obstacle(full)

    assert main(["grid", str(path)]) == 2
    out, err = capsys.readouterr()
    message = f"cannot write the run folder {full}: {reason}{stopped}"
    assert err == f"attnplace: error: {message}\n"
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("[")] == \
        ["[1/4] done 1, failed 0, left 3", "[2/4] done 2, failed 0, left 2"] + \
        (["[3/4] done 2, failed 1, left 1"] if stopped else [])
    assert recorded(grid.results_dir) == sorted(r.id for r in order[:2])
    assert not order[3].config.resolved_run_dir().exists()  # the run after it never started
    (call,) = read_calls(grid.results_dir)
    assert call["outcome"] == f"stopped: {message}"
    assert (call["to_run"], call["completed"], call["failed"]) == (4, 2, 0)

    shutil.rmtree(in_the_way) if in_the_way.is_dir() else in_the_way.unlink()  # room again
    assert main(["grid", str(path)]) == 0
    assert [r["status"] for r in records(grid.results_dir).values()] == ["completed"] * 4
    assert [c["outcome"] for c in read_calls(grid.results_dir)] == [f"stopped: {message}", "finished"]


def test_a_report_that_cannot_be_written_ends_in_one_line(results, capsys):
    """A folder where summary.md goes, as a full or read-only disk would refuse it: one line, no traceback, and
    the records stay as they were."""
    before = {p: p.read_bytes() for p in results.glob("runs/*/record.json")}
    (results / "summary.md" / "in the way").mkdir(parents=True)
    assert main(["report", str(results)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"attnplace: error: cannot write the results folder {results}: Is a directory\n")
    assert (results / "summary.csv").is_file()  # written before summary.md
    assert {p: p.read_bytes() for p in results.glob("runs/*/record.json")} == before

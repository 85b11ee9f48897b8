"""calls.jsonl: every grid call leaves one line, however it ends, and earlier lines stay as they were."""

import json
import multiprocessing

import pytest

from attnplace.atomic import append_line
from attnplace.errors import UserError
from attnplace.run.calls import describe_calls, read_calls, recorded_call


def test_each_way_a_call_ends_is_recorded_and_kept(tmp_path):
    with recorded_call(tmp_path, "attnplace grid g.yaml", "local", 2) as call:
        call.update(to_run=3, runs=3, completed=3, failed=0)
    with pytest.raises(UserError), recorded_call(tmp_path, "attnplace grid g.yaml", "local", 2):
        raise UserError("data.path='x' is invalid")
    with pytest.raises(KeyboardInterrupt), recorded_call(tmp_path, None, "ray", 4, "10.0.0.1:6379"):
        raise KeyboardInterrupt
    with pytest.raises(ZeroDivisionError), recorded_call(tmp_path, "attnplace grid g.yaml", "local", 1):
        1 / 0
    calls = read_calls(tmp_path)
    assert [c["outcome"] for c in calls] == ["finished", "stopped: data.path='x' is invalid", "interrupted",
                                             "error: ZeroDivisionError: division by zero"]
    assert calls[2]["device"] == "Ray cluster at 10.0.0.1:6379" and calls[2]["command"] is None
    assert all(c["ended"] >= c["started"] and c["wall_s"] >= 0 for c in calls)


def test_unreadable_lines_are_left_out(tmp_path):
    good = {"command": "attnplace grid g.yaml", "wall_s": 5400.0, "outcome": "finished"}
    (tmp_path / "calls.jsonl").write_text(json.dumps(good) + "\n{half a line\n[1, 2]\n" + json.dumps(good) + "\n")
    assert read_calls(tmp_path) == [good, good]
    lines = describe_calls(read_calls(tmp_path))
    assert lines[0].startswith("`attnplace grid g.yaml`: ") and "1.5 h" in lines[0]
    assert lines[-1] == "2 calls, 3.0 h of wall time in all"
    assert read_calls(tmp_path / "elsewhere") == []


def _append_many(path, writer: int) -> None:
    for i in range(200):
        append_line(path, json.dumps({"writer": writer, "i": i, "pad": "x" * 300}))


def test_two_calls_ending_together_both_keep_their_lines(tmp_path):
    """Two grid calls on one results folder append at once; a read-and-rename would have kept one of them."""
    path = tmp_path / "calls.jsonl"
    workers = [multiprocessing.get_context("fork").Process(target=_append_many, args=(path, w)) for w in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((c["writer"], c["i"]) for c in lines) == [(w, i) for w in (0, 1) for i in range(200)]


def test_a_line_torn_by_a_crash_does_not_swallow_the_next_call(tmp_path):
    good = {"command": "attnplace grid g.yaml", "outcome": "finished"}
    (tmp_path / "calls.jsonl").write_text(json.dumps(good) + "\n" + '{"command": "attnplace gr')  # killed mid-write
    with recorded_call(tmp_path, "attnplace grid g.yaml", "local", 2):
        pass
    assert [c["outcome"] for c in read_calls(tmp_path)] == ["finished", "finished"]
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 3

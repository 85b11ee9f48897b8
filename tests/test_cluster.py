"""Grids on a Ray cluster started with `ray start` (tests/ray_cluster.py): the same records as a local grid,
a node lost mid-grid, a node that cannot see the results folder, and GPU fractions by Ray's accounting.

Slow (each starts a cluster and trains small grids; about 2.5 minutes together on 2 idle cores):
`python -m pytest -m slow tests/test_cluster.py`.
"""

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from grids import AXES, TINY_BASE, records, same_runs, write_grid
from ray_cluster import RayCluster

from attnplace.cli import main
from attnplace.grid.calls import read_calls

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

# Long enough runs (a few seconds each) that a node can be killed while one of them trains.
BASE = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 8}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid run locally, one run after another: what every cluster run must reproduce."""
    tmp = tmp_path_factory.mktemp("local")
    assert main(["grid", str(write_grid(tmp, AXES, name="tiny", base=BASE))]) == 0
    return records(tmp / "out" / "tiny"), pd.read_csv(tmp / "out" / "tiny" / "summary.csv")


@pytest.fixture
def cluster():
    cluster = RayCluster()
    try:
        yield cluster
    finally:  # whatever happened, no Ray process outlives the test
        cluster.stop()


def start_grid(cluster: RayCluster, path: Path, *options: str) -> subprocess.Popen:
    """`attnplace grid PATH --launcher ray --address HEAD`, as a user runs it (its own driver process)."""
    command = [sys.executable, "-m", "attnplace.cli", "grid", str(path), "--launcher", "ray",
               "--address", cluster.address, *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)


def finish(grid: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = grid.communicate(timeout=timeout)
    return grid.returncode, out, err


def test_grid_on_a_two_node_cluster_matches_local(tmp_path, cluster, reference):
    cluster.start("head")
    cluster.start("node2")
    code, _, err = finish(start_grid(cluster, write_grid(tmp_path, AXES, name="tiny", base=BASE)))
    assert code == 0, err
    results = tmp_path / "out" / "tiny"
    found = records(results)
    same_runs(reference[0], found)
    assert all(len(r["sessions"]) == 1 for r in found.values())
    assert len({r["sessions"][0]["ray_node"] for r in found.values()}) == 2  # both nodes trained runs
    assert all((results / "runs" / run_id / "log.txt").stat().st_size > 0 for run_id in found)  # logs beside records
    assert not list(results.glob(".driver-*"))  # the shared-folder marker is gone

    # A run that fails on its own (NaN loss) is recorded failed once: Ray does not retry it as a lost node.
    code, _, err = finish(start_grid(cluster, write_grid(tmp_path, {"optim.lr": [1.0e30]}, name="nan", base=BASE)))
    assert code == 1, err
    (failed,) = records(tmp_path / "out" / "nan").values()
    assert failed["status"] == "failed" and "loss became" in failed["error"]
    assert len(failed["sessions"]) == 1


def test_a_node_lost_mid_grid_loses_nothing(tmp_path, cluster, reference):
    cluster.start("head")
    cluster.start("node2")
    results = tmp_path / "out" / "tiny"
    grid = start_grid(cluster, write_grid(tmp_path, AXES, name="tiny", base=BASE))
    # Kill node2 once both runs in flight (one per node) have a checkpoint, i.e. mid-training.
    deadline = time.time() + 240
    while len(training(results)) < 2:
        assert grid.poll() is None and time.time() < deadline, "the grid finished before a node could be lost"
        time.sleep(0.05)
    cluster.kill("node2")

    code, _, err = finish(grid)
    assert code == 0, err
    found = records(results)  # every run recorded once
    same_runs(reference[0], found)
    table = pd.read_csv(results / "summary.csv").drop(columns="train_images_per_s")  # the one wall-clock column
    pd.testing.assert_frame_equal(table, reference[1].drop(columns="train_images_per_s"), check_exact=True)
    (lost,) = [r["sessions"] for r in found.values() if len(r["sessions"]) > 1]  # one run was on node2
    survivor = {r["sessions"][0]["ray_node"] for r in found.values() if len(r["sessions"]) == 1}
    assert lost[0]["ray_node"] not in survivor and {lost[1]["ray_node"]} == survivor  # retried on the head
    assert lost[1]["from_epoch"] >= 1  # resumed from last.ckpt, not started over


def training(results: Path) -> list[str]:
    """Runs that are mid-training with at least one epoch checkpointed."""
    return [r["id"] for r in records(results).values() if r["status"] == "running" and r["history"]
            and (results / "runs" / r["id"] / "last.ckpt").exists()] if results.exists() else []


def test_a_node_that_cannot_see_the_results_folder_stops_the_grid(tmp_path, cluster):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs mount namespaces (`unshare -m`, as root) to hide a folder from one node")
    out = tmp_path / "out"
    out.mkdir()
    cluster.start("head")  # sees the folder
    # node2 runs in a mount namespace of its own, with an empty tmpfs over the folder: like a machine that
    # does not mount it.
    cluster.start("node2", wrap=("unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs {out} && exec "$@"', "sh"))
    code, _, err = finish(start_grid(cluster, write_grid(tmp_path, AXES, name="tiny", base=BASE)))
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"attnplace: error: results folder {out / 'tiny'} is not shared with Ray node(s) ")
    assert "(node " in last and "put output_dir on a filesystem every node mounts at the same path" in last
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["calls.jsonl", "grid.json", "status.json"]
    (call,) = read_calls(out / "tiny")  # nothing trained, and the call says why it stopped
    assert call["outcome"].startswith("stopped: results folder") and call["completed"] == 0


def test_gpu_fractions_pack_runs_by_rays_accounting(tmp_path, cluster, reference):
    cluster.start("head", cpus=4, gpus=1)  # a declared GPU: Ray accounts for it, no real one is needed
    code, _, err = finish(start_grid(cluster, write_grid(tmp_path, AXES, name="tiny", base=BASE),
                                       "--gpus-per-run", "0.5"))
    assert code == 0, err
    found = records(tmp_path / "out" / "tiny")
    assert all(r["status"] == "completed" for r in found.values())
    sessions = [r["sessions"][0] for r in found.values()]
    assert all(s["ray_gpu_ids"] == ["0"] and s["cuda_visible_devices"] == "0" for s in sessions)
    assert most_at_once(sessions) == 2  # 4 CPUs were free, but two halves fill the one GPU


def most_at_once(sessions: list[dict]) -> int:
    """The largest number of sessions that were training at the same moment."""
    events = sorted((datetime.fromisoformat(s[key]), step) for s in sessions
                    for key, step in (("started", 1), ("ended", -1)))
    running = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start: touching is not overlapping
        running += step
        peak = max(peak, running)
    return peak

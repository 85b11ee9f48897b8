"""Grids on a Ray cluster started with `ray start` (tests/ray_cluster.py): the same records as a local grid,
a node lost mid-grid, a node that cannot see the results folder, GPU fractions by Ray's accounting, and seed
blocks pinned to the hardware kinds nodes declare.

The cluster tests are slow (each starts a cluster and trains small grids; about 3.5 minutes together on 2 idle
cores): `python -m pytest -m slow tests/test_cluster.py`. The tests of the pure helpers are not.
"""

import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from grids import AXES, TINY_BASE, records, same_runs, write_grid
from ray_cluster import RayCluster

from attnplace.cli import main
from attnplace.run.calls import read_calls
from attnplace.grid.cluster import capacity, hardware_lines, pin_blocks
from attnplace.run.environment import DECLARED_AMOUNT, cpu_model, hardware_resource, resource_hardware

pytest.importorskip("ray")
slow = pytest.mark.slow

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


@slow
def test_grid_on_a_two_node_cluster_matches_local(tmp_path, cluster, reference):
    cluster.start("head")
    cluster.start("node2")
    code, out, err = finish(start_grid(cluster, write_grid(tmp_path, AXES, name="tiny", base=BASE)))
    assert code == 0, err
    assert "warning: no Ray node declares its hardware kind, so a seed block's runs may train on different" in out
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


@slow
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


@slow
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


def closed_port() -> int:
    """A local port nothing listens on: bound by the OS, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:{closed}", "no Ray head answers there (Connection refused); start one with `ray start --head`"),
    ("head-node", "expected HOST:PORT, the address `ray start --head` prints"),
])
def test_a_bad_address_stops_the_grid_in_one_line_at_once(tmp_path, capsys, address, says):
    """Ray would retry an unreachable head for ever; the grid names the address instead, before it writes."""
    address = address.format(closed=closed_port())  # found now, not at collection: the port stays free
    path = write_grid(tmp_path, AXES, name="tiny", base=BASE)
    started = time.monotonic()
    assert main(["grid", str(path), "--launcher", "ray", "--address", address]) == 2
    assert time.monotonic() - started < 30
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"attnplace: error: --address {address}: ")
    assert says in line
    assert not (tmp_path / "out").exists()


@slow
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


BLOCK_AXES = {"model.pattern": ["none", "p1"], "seed": [0, 1]}
MADE_UP = "Made-up CPU, torch kernels NONE"  # with a comma, which the resource name must escape


@pytest.fixture(scope="module")
def block_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blocks")
    assert main(["grid", str(write_grid(tmp, BLOCK_AXES, name="blocks"))]) == 0
    return records(tmp / "out" / "blocks")


@slow
def test_each_seed_block_trains_on_one_declared_hardware_kind(tmp_path, cluster, block_reference):
    """The head declares this machine's kind, node2 a made-up one: each block trains on one kind (both kinds
    get one), every record says its declared kind beside what its probe saw, node2 is named for the mismatch,
    and a block bound to the made-up kind continues only there. One CPU under two names trains the same numbers
    as a local grid."""
    here = cpu_model()
    cluster.start("head", resources={hardware_resource(here): DECLARED_AMOUNT})
    cluster.start("node2", resources={hardware_resource(MADE_UP): DECLARED_AMOUNT})
    path = write_grid(tmp_path, BLOCK_AXES, name="blocks")
    code, out, err = finish(start_grid(cluster, path))
    assert code == 0, out + err
    found = records(tmp_path / "out" / "blocks")
    same_runs(block_reference, found)
    assert all(r["environment"]["cpu"] == here for r in found.values())  # what the probes saw
    kinds = [{r["environment"]["declared_hardware"] for r in found.values() if r["axes"]["seed"] == seed}
             for seed in (0, 1)]
    assert sorted(kinds, key=str) == [{here}, {MADE_UP}], out
    assert f"new blocks pinned to hardware: seed 0 on {min(kinds[0])}; seed 1 on {min(kinds[1])}" in out, out
    made_up = [r for r in found.values() if r["environment"]["declared_hardware"] == MADE_UP]
    (node2,) = {r["sessions"][0]["ray_node"] for r in made_up}
    named = [line for line in out.splitlines() if line.startswith("Ray node ")]
    mismatch = f"(node {node2[:8]}) declares hardware {MADE_UP!r} but its probe sees {here!r}"
    assert len(named) == 1 and mismatch in named[0], out

    shutil.rmtree(tmp_path / "out" / "blocks" / "runs" / made_up[0]["id"])  # its block is partial again
    code, out, err = finish(start_grid(cluster, path))
    assert code == 0, out + err
    again = records(tmp_path / "out" / "blocks")
    same_runs(block_reference, again)
    assert again[made_up[0]["id"]]["environment"]["declared_hardware"] == MADE_UP
    assert again[made_up[0]["id"]]["sessions"][0]["ray_node"] == node2


def test_a_hardware_kind_survives_its_ray_resource_name():
    """Ray splits a node's resource list at commas: a kind's commas are escaped, the rest stays readable."""
    kind = "Intel(R) Xeon(R), torch kernels AVX512"
    assert hardware_resource(kind) == "hardware:Intel(R) Xeon(R)%2C torch kernels AVX512"
    for kind in (cpu_model(), MADE_UP, "NVIDIA H200", 'odd: "quoted", 100% é'):
        assert "," not in hardware_resource(kind) and resource_hardware(hardware_resource(kind)) == kind
    assert resource_hardware("CPU") is None and resource_hardware("node:127.0.0.1") is None


def test_new_blocks_go_to_the_kind_that_finishes_them_soonest_and_stay_there():
    """Seed 0's block is bound to A; seeds 1-3 start here. Each block's runs ask for one kind, the new blocks
    filling the kinds by how many runs their nodes hold at once; a kind no node declares pins nothing."""
    runs = [SimpleNamespace(id=f"{seed}{pattern}", seed=seed) for seed in range(4) for pattern in "xy"]
    pins = pin_blocks(runs, {"0x": "A", "0y": "A"}, {"A": 2, "B": 2})
    assert pins == {"0x": "A", "0y": "A", "1x": "B", "1y": "B", "2x": "A", "2y": "A", "3x": "B", "3y": "B"}
    assert pin_blocks(runs, {"0x": "C", "0y": "C"}, {"A": 1, "B": 2}) == {
        "0x": None, "0y": None, "1x": "B", "1y": "B", "2x": "A", "2y": "A", "3x": "B", "3y": "B"}
    assert set(pin_blocks(runs, {}, {}).values()) == {None}  # no node declares a kind: Ray places them anywhere


def test_a_kinds_capacity_is_the_runs_its_nodes_hold_at_once():
    nodes = [{"Resources": {"CPU": 4.0, "GPU": 1.0, hardware_resource("A"): 1000.0}},
             {"Resources": {"CPU": 2.0, "GPU": 2.0, hardware_resource("A"): 1000.0, hardware_resource("B"): 1000.0}},
             {"Resources": {"CPU": 8.0, "GPU": 1.0}}]
    assert capacity(nodes, cpus_per_run=1, gpus_per_run=0) == {"A": 6, "B": 2}
    assert capacity(nodes, cpus_per_run=1, gpus_per_run=0.25) == {"A": 6, "B": 2}  # the first node: 4 CPUs, 4 quarters
    assert capacity(nodes, cpus_per_run=0.5, gpus_per_run=0.5) == {"A": 6, "B": 4}


def test_nodes_whose_probe_contradicts_their_declaration_are_named_once_each():
    def node(number: int, *kinds: str) -> dict:
        return {"NodeManagerAddress": f"10.0.0.{number}", "NodeID": f"{number}" * 16,
                "Resources": {"CPU": 2.0, **{hardware_resource(kind): 1000.0 for kind in kinds}}}

    lines = hardware_lines([node(1, "A"), node(2, "B"), node(3, "A", "C"), node(4)], ["A", "A", "A", "A"])
    assert lines == ["Ray node 10.0.0.2 (node 22222222) declares hardware 'B' but its probe sees 'A'",
                     "Ray node 10.0.0.4 (node 44444444) declares no hardware kind, so no seed block is pinned to it; "
                     "start each node with the --resources that `attnplace hardware` prints there "
                     "(docs/grids.md, \"On a cluster\")"]
    (warning,) = hardware_lines([node(1), node(2)], ["A", "B"])
    assert warning.startswith("warning: no Ray node declares its hardware kind, so a seed block's runs may train on")

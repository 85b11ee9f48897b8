"""A grid's runs as Ray tasks, on a local Ray or on a cluster started with `ray start` (docs/grids.md: "On a cluster").

Each run is one task that reads and writes its run folder under the results folder, so that folder must be
one every node mounts at the same path: before any run starts, a task on every node that can take a run
looks for a marker the driver has just written there, and the grid stops with the folder's name when one
cannot see it. A task whose node is lost (its raylet or machine died) is retried on another node and
resumes from its `last.ckpt`; a run that fails for its own reasons (NaN loss, bad config) returns a
`failed` result and is not retried as if a node had died.

Every run of a seed block must train on one hardware kind (seed_blocks.py). Ray cannot add a resource to a running
node, so each node declares its kind at `ray start` as a custom resource (`record.hardware_resource`; `attnplace
hardware` prints it), and every run asks for a sliver of its block's kind: Ray then places it only on nodes of
that kind. A block not yet started is given a declared kind before its runs are submitted. A local Ray that the
grid starts declares this machine's kind, as local workers would train on it.
"""

import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from ..run.environment import DECLARED_AMOUNT, hardware_here, hardware_resource, resource_hardware
from ..run.result import RunResult
from ..run.sections import TrainerConfig
from .spec import Grid, GridRun
from .worker import make_payload, run_logged

NODE_LOSS_RETRIES = 2  # how many lost nodes one run may outlive
HEAD_TIMEOUT_S = 10  # a head that takes longer to accept a TCP connection is not one to train on
PROBE_TIMEOUT_S = 300  # a node's first task imports torch: minutes on a busy node
PIN = 0.001  # of its kind's resource, per run: the kind places a run, CPUs and GPUs limit how many at once
UNDECLARED = ("start each node with the --resources that `attnplace hardware` prints there "
              "(docs/grids.md, \"On a cluster\")")


def launch_ray(runs: list[GridRun], grid: Grid, workers: int, address: str | None, gpus_per_run: float,
               cpus_per_run: float, guards: dict[str, dict] | None = None, echo=print) -> Iterator[RunResult]:
    """Yield each run's result as its task finishes. Fractional `gpus_per_run` (e.g. 0.25) packs small
    models onto one GPU, by Ray's accounting. `runs` come block-major and are submitted so (Ray starts them
    roughly in that order), each pinned to its block's declared hardware kind (`pin_blocks`)."""
    import ray

    trainer = grid.runs[0].config.trainer
    connect(address, workers * cpus_per_run, {hardware_resource(hardware_here(trainer.device())): DECLARED_AMOUNT})
    nodes = roomy_nodes(cpus_per_run, gpus_per_run)
    for line in check_nodes(grid.results_dir, nodes, trainer):
        echo(line)
    guards = guards or {}
    bound = {run.id: (guards.get(run.id, {}).get("hardware") or [None])[0] for run in runs}
    pins = pin_blocks(runs, bound, capacity(nodes, cpus_per_run, gpus_per_run))
    if started := {run.seed: pins[run.id] for run in runs if pins[run.id] and not bound[run.id]}:
        echo("new blocks pinned to hardware: " + "; ".join(f"seed {seed} on {kind}" for seed, kind in started.items()))
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=NODE_LOSS_RETRIES,
                      retry_exceptions=False)(run_logged)
    futures = {task.options(resources={hardware_resource(pins[run.id]): PIN} if pins[run.id] else {})
               .remote(make_payload(run, grid, max(1, int(cpus_per_run)), guards.get(run.id))): run for run in runs}
    try:
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            run = futures.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as err:  # retries exhausted (nodes lost) or the task crashed: recorded, go on
                result = RunResult.failed(run.id, f"ray task failed: {type(err).__name__}")
            yield result
    finally:  # closed early (the grid stopped): the tasks left would only repeat the failure
        for future in futures:
            ray.cancel(future, force=True)


def connect(address: str | None, num_cpus: float | None = None, resources: dict | None = None) -> None:
    """Join the cluster at `address`, or start a local Ray of `num_cpus` CPUs that declares `resources` (this
    machine's hardware kind); a driver already connected stays so."""
    import ray

    if ray.is_initialized():
        return
    if address:
        check_head(address)
    try:
        ray.init(address=address, num_cpus=None if address else num_cpus, resources=None if address else resources,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:  # `auto` with no Ray running here: Ray says so at once
        raise UserError(f"--address {address}: {str(err).splitlines()[0]}") from None


def check_head(address: str) -> None:
    """One line when nothing accepts a connection at `address` (HOST:PORT or ray://HOST:PORT), since `ray.init`
    would retry it for ever, logging a warning every 30 s: a mistyped address would hang the grid. (A port that
    accepts but is not a Ray head still hangs there; a TCP probe cannot tell.) `auto` and `local` are Ray's own
    lookups, left to it."""
    if address in ("auto", "local"):
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not (colon and host and port.isdigit()):
        raise UserError(f"--address {address}: expected HOST:PORT, the address `ray start --head` prints "
                        "(e.g. 10.0.0.5:6379), or auto")
    try:
        socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(f"--address {address}: no Ray head answers there ({err.strerror or err}); start one with "
                        "`ray start --head`, or give the address it prints") from None


def cluster_hardware(address: str) -> list[str] | None:
    """The hardware kinds the live nodes of the cluster at `address` declare: where its seed blocks may train.
    None when no node declares one: then runs go anywhere, as Ray places them (`check_nodes` says so)."""
    import ray

    connect(address)
    return sorted({kind for node in ray.nodes() if node["Alive"] for kind in declared(node)}) or None


def declared(node: dict) -> list[str]:
    """The hardware kinds a node (an entry of `ray.nodes()`) declared at `ray start`."""
    return [kind for resource in node["Resources"] if (kind := resource_hardware(resource))]


def roomy_nodes(cpus_per_run: float, gpus_per_run: float) -> list[dict]:
    """The live nodes with room for one run; one line if there is none, since the tasks would wait forever."""
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= cpus_per_run
             and n["Resources"].get("GPU", 0) >= gpus_per_run]
    if not nodes:
        raise UserError(f"no Ray node has room for one run (--cpus-per-run {cpus_per_run:g}, --gpus-per-run "
                        f"{gpus_per_run:g}); the cluster has {ray.cluster_resources()}")
    return nodes


def capacity(nodes: list[dict], cpus_per_run: float, gpus_per_run: float) -> dict[str, float]:
    """How many runs at once the nodes of each declared hardware kind hold, by Ray's accounting."""
    held: dict[str, float] = {}
    for node in nodes:
        resources = node["Resources"]
        runs = min((resources.get(name, 0) / need for name, need in (("CPU", cpus_per_run), ("GPU", gpus_per_run))
                    if need), default=1)
        for kind in declared(node):
            held[kind] = held.get(kind, 0) + runs
    return dict(sorted(held.items()))


def pin_blocks(runs: list[GridRun], bound: dict[str, str | None], slots: dict[str, float]) -> dict[str, str | None]:
    """The hardware kind each run asks Ray for: its block's `bound` kind, or for a block not yet started (bound to
    None) the declared kind whose nodes would finish it soonest (`slots`: runs they hold at once), counting the
    runs already pinned there, so that a block never spreads over two kinds and the kinds share the work by their
    size. None where no node declares the kind (the run goes anywhere; its worker still checks its block's kind)."""
    load = Counter(kind for run in runs if (kind := bound.get(run.id)) in slots)
    fresh: dict[int, str] = {}
    for seed, size in Counter(run.seed for run in runs if not bound.get(run.id)).items():  # block-major
        if slots:
            fresh[seed] = min(slots, key=lambda kind: (load[kind] + size) / slots[kind])
            load[fresh[seed]] += size
    return {run.id: kind if (kind := bound.get(run.id) or fresh.get(run.seed)) in slots else None for run in runs}


def check_nodes(folder: Path, nodes: list[dict], trainer: TrainerConfig) -> list[str]:
    """Stop with one line unless a task on every node in `nodes` sees `folder` as the driver does (the same marker
    file at the same absolute path); return what their probes say of their hardware (`hardware_lines`). Nodes
    that join later are not checked."""
    folder = folder.resolve()
    seen = probe_nodes(folder, nodes, trainer)
    blind = [where(n) for n, (marker, _) in zip(nodes, seen) if marker is None]
    if blind:
        raise UserError(f"results folder {folder} is not shared with Ray node(s) {', '.join(blind)}: a task there "
                        f"did not find the marker the grid wrote; put output_dir on a filesystem every node mounts "
                        f"at the same path")
    return hardware_lines(nodes, [probe for _, probe in seen])


def hardware_lines(nodes: list[dict], probes: list[str]) -> list[str]:
    """A line for each node whose probe does not see the hardware kind it declares (the declaration places runs
    and binds blocks, so it had better be true) or that declares none while others do; or one warning when no
    node declares its kind."""
    if not any(map(declared, nodes)):
        return [f"warning: no Ray node declares its hardware kind, so a seed block's runs may train on different "
                f"hardware; {UNDECLARED}"]
    lines = []
    for node, probe in zip(nodes, probes):
        if not (kinds := declared(node)):
            lines.append(f"Ray node {where(node)} declares no hardware kind, so no seed block is pinned to it; "
                         f"{UNDECLARED}")
        elif probe not in kinds:
            lines.append(f"Ray node {where(node)} declares hardware {' and '.join(map(repr, kinds))} but its probe "
                         f"sees {probe!r}")
    return lines


def probe_nodes(folder: Path, nodes: list[dict], trainer: TrainerConfig) -> list[tuple[str | None, str]]:
    """What a task on each node finds: the token of a marker the driver writes in `folder` just now (None: not
    found), and the hardware kind its probe sees for runs of `trainer` (`record.hardware_here`)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / f".driver-{token}"
    marker.write_text(token)
    probe = ray.remote(num_cpus=0)(_probe)
    try:
        found = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                         .remote(str(marker), trainer) for n in nodes], timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"Ray nodes did not answer the check of results folder {folder} within {PROBE_TIMEOUT_S} s; "
                        f"see `ray status`") from None
    finally:
        marker.unlink()
    return [(text if text == token else None, kind) for text, kind in found]


def where(node: dict) -> str:
    return f"{node['NodeManagerAddress']} (node {node['NodeID'][:8]})"


def _probe(marker: str, trainer: TrainerConfig) -> tuple[str | None, str]:
    return _read_marker(marker), hardware_here(trainer.device())


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None

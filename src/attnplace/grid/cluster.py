"""A grid's runs as Ray tasks, on a local Ray or on a cluster started with `ray start` (README: "On a cluster").

Each run is one task that reads and writes its run folder under the results folder, so that folder must be
one every node mounts at the same path: before any run starts, a task on every node that can take a run
looks for a marker the driver has just written there, and the grid stops with the folder's name when one
cannot see it. A task whose node is lost (its raylet or machine died) is retried on another node and
resumes from its `last.ckpt`; a run that fails for its own reasons (NaN loss, bad config) returns a
`failed` result and is not retried as if a node had died.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from .spec import Grid, GridRun
from .worker import make_payload, run_logged

NODE_LOSS_RETRIES = 2  # how many lost nodes one run may outlive
PROBE_TIMEOUT_S = 300  # a node's first task imports torch: minutes on a busy node


def launch_ray(runs: list[GridRun], grid: Grid, workers: int, address: str | None, gpus_per_run: float,
               cpus_per_run: float, guards: dict[str, dict] | None = None) -> Iterator[dict]:
    """Yield each run's result as its task finishes. Fractional `gpus_per_run` (e.g. 0.25) packs small
    models onto one GPU, by Ray's accounting."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers * cpus_per_run, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    check_shared_folder(grid.results_dir, cpus_per_run, gpus_per_run)
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=NODE_LOSS_RETRIES,
                      retry_exceptions=False)(run_logged)
    futures = {task.remote(make_payload(run, grid, max(1, int(cpus_per_run)), (guards or {}).get(run.id))): run for run in runs}
    try:
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            run = futures.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as err:  # retries exhausted (nodes lost) or the task crashed: recorded, go on
                result = {"id": run.id, "status": "failed", "error": f"ray task failed: {type(err).__name__}"}
            yield result
    finally:  # closed early (the grid stopped): the tasks left would only repeat the failure
        for future in futures:
            ray.cancel(future, force=True)


def check_shared_folder(folder: Path, cpus_per_run: float, gpus_per_run: float) -> None:
    """Stop with one line unless a task on every node that has room for a run sees `folder` as the driver
    does (the same marker file at the same absolute path). Nodes that join later are not checked."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= cpus_per_run
             and n["Resources"].get("GPU", 0) >= gpus_per_run]
    if not nodes:  # the tasks would wait forever
        raise UserError(f"no Ray node has room for one run (--cpus-per-run {cpus_per_run:g}, --gpus-per-run "
                        f"{gpus_per_run:g}); the cluster has {ray.cluster_resources()}")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / f".driver-{token}"
    marker.write_text(token)
    probe = ray.remote(num_cpus=0)(_read_marker)
    try:
        seen = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(str(marker)) for n in nodes], timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"Ray nodes did not answer the check of results folder {folder} within {PROBE_TIMEOUT_S} s; "
                        f"see `ray status`") from None
    finally:
        marker.unlink()
    blind = [f"{n['NodeManagerAddress']} (node {n['NodeID'][:8]})" for n, s in zip(nodes, seen) if s != token]
    if blind:
        raise UserError(f"results folder {folder} is not shared with Ray node(s) {', '.join(blind)}: a task there "
                        f"did not find the marker the grid wrote; put output_dir on a filesystem every node mounts "
                        f"at the same path")


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None

"""Execute a grid's runs, locally in worker processes or as Ray tasks, and keep the user informed.

Resumable by construction: a run whose `record.json` says `completed` is skipped, one that says
`failed` is skipped unless `retry_failed`, and anything else (never started, killed mid-run) is run,
resuming from its `last.ckpt`. Records and checkpoints are written atomically, so killing the grid at
any moment and running the same command again finishes it with every run recorded once.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..atomic import write_json
from ..train.record import read_record
from .spec import Grid, GridRun


def run_status(run: GridRun) -> str:
    record = read_record(run.config.resolved_run_dir() / "record.json")
    return record.get("status", "new") if record else "new"


def plan(grid: Grid, retry_failed: bool = False) -> list[GridRun]:
    """The runs still to do."""
    skip = {"completed"} if retry_failed else {"completed", "failed"}
    return [r for r in grid.runs if run_status(r) not in skip]


def dry_run_table(grid: Grid) -> str:
    keys = list(grid.axes)
    header = ["id", "status", *keys]
    rows = [[r.id, run_status(r), *(str(r.axes[k]) for k in keys)] for r in grid.runs]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), *map(line, rows)])


def payload(run: GridRun, grid: Grid, threads: int) -> dict:
    """What a worker needs; CPU threads are split between parallel runs unless the config fixes them."""
    config = run.config.to_dict()
    config["trainer"]["threads"] = config["trainer"]["threads"] or threads
    return {"config": config, "grid": grid.name, "axes": run.axes}


@dataclass
class Progress:
    """Runs done / failed / left, the last result, and an ETA from the mean duration so far."""

    total: int
    workers: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def update(self, result: dict) -> str:
        if result["status"] == "completed":
            self.done += 1
        else:
            self.failed += 1
        finished = self.done + self.failed
        left = self.total - finished
        per_run = (time.perf_counter() - self.started) / finished
        eta = per_run * left
        acc = result.get("metrics", {}).get("test_acc")
        last = f"test acc {acc:.2%}" if acc is not None else f"{result['status']}: {result.get('error')}"
        return (f"[{finished}/{self.total}] done {self.done}, failed {self.failed}, left {left}"
                f" | {result['id']}: {last} | ETA {eta / 60:.1f} min")


def launch_local(runs: list[GridRun], grid: Grid, workers: int) -> Iterator[dict]:
    """Each run in a fresh Python process, `workers` at once; on a multi-GPU machine one GPU per slot."""
    gpus = _visible_gpus()
    pending, active = list(runs), {}
    while pending or active:
        while pending and len(active) < workers:
            run = pending.pop(0)
            slot = next(i for i in range(workers) if i not in {s for s, _ in active.values()})
            active[_spawn(run, grid, workers, gpus[slot % len(gpus)] if gpus else None)] = (slot, run)
        time.sleep(0.2)
        for proc in [p for p in active if p.poll() is not None]:
            _, run = active.pop(proc)
            record = read_record(run.config.resolved_run_dir() / "record.json") or {}
            yield {"id": run.id, "status": record.get("status", "failed"),
                   "error": record.get("error") or f"worker exited with {proc.returncode}",
                   "metrics": record.get("metrics", {})}


def _spawn(run: GridRun, grid: Grid, workers: int, gpu: str | None) -> subprocess.Popen:
    run_dir = run.config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = write_json(run_dir / "payload.json", payload(run, grid, max(1, (os.cpu_count() or 1) // workers)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    with open(run_dir / "log.txt", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "attnplace.grid.worker", str(spec)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the grid process dies, so no orphan trains on behind a rerun."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the per-run lock in worker.py still prevents double training


def _visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def launch_ray(runs: list[GridRun], grid: Grid, workers: int, address: str | None, gpus_per_run: float,
               cpus_per_run: float) -> Iterator[dict]:
    """The same runs as Ray tasks: an existing cluster (`address`) or a local Ray started for the grid.

    Fractional `gpus_per_run` (e.g. 0.25) packs small models onto one GPU; tasks are retried when a
    worker is lost, and resume from their checkpoint (the results dir must be on a shared filesystem).
    """
    import ray

    from .worker import run_payload

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers * cpus_per_run, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)(run_payload)
    futures = {task.remote(payload(run, grid, max(1, int(cpus_per_run)))): run for run in runs}
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        run = futures.pop(ready[0])
        try:
            yield ray.get(ready[0])
        except Exception as err:  # retries exhausted (worker lost): record what we know, go on
            yield {"id": run.id, "status": "failed", "error": f"ray task failed: {type(err).__name__}"}


def run_grid(grid: Grid, *, launcher: str = "local", workers: int = 1, retry_failed: bool = False,
             address: str | None = None, gpus_per_run: float = 0.0, cpus_per_run: float = 1.0,
             echo=lambda line: print(line, flush=True)) -> dict:
    """Run what is left of `grid`; return counts {"runs", "skipped", "completed", "failed"}."""
    grid.results_dir.mkdir(parents=True, exist_ok=True)
    write_json(grid.results_dir / "grid.json", grid.describe())
    todo = plan(grid, retry_failed)
    echo(f"grid {grid.name}: {len(grid.runs)} runs, {len(grid.runs) - len(todo)} already recorded, "
         f"{len(todo)} to run ({launcher}, {workers} at once) -> {grid.results_dir}")
    if launcher == "ray":
        results = launch_ray(todo, grid, workers, address, gpus_per_run, cpus_per_run)
    else:
        results = launch_local(todo, grid, workers)
    progress = Progress(len(todo), workers)
    for result in results:
        echo(progress.update(result))
    statuses = [run_status(r) for r in grid.runs]
    write_json(grid.results_dir / "status.json", dict(zip([r.id for r in grid.runs], statuses)))
    return {"runs": len(grid.runs), "completed": statuses.count("completed"), "failed": statuses.count("failed"),
            "ran": len(todo)}

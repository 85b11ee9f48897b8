"""Execute a grid's runs, locally in worker processes or as Ray tasks (cluster.py), and keep the user informed.

Resumable by construction: a run whose `record.json` says `completed` is skipped, one that failed in
training is skipped unless `retry_failed`, and anything else (never started, killed mid-run, failed before
training began, e.g. on missing data) is run, resuming from its `last.ckpt`. Records and checkpoints are
written atomically, so killing the grid at any moment and running the same command again finishes it with
every run recorded once.
"""

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..atomic import folder_errors, write_json
from ..errors import UserError
from ..train.record import hardware_of, read_record
from .calls import recorded_call
from .spec import Grid, GridRun
from .worker import make_payload

STOP_AFTER = 2  # when a grid's first this-many finished runs all fail on one UserError, the grid stops


def run_record(run: GridRun) -> dict:
    return read_record(run.config.resolved_run_dir() / "record.json") or {}


def run_status(run: GridRun) -> str:
    return run_record(run).get("status", "new")


def plan(grid: Grid, retry_failed: bool = False) -> list[GridRun]:
    """The runs still to do: all but the completed ones and, unless `retry_failed`, those that failed in
    training (a failure before training, `failed_epoch` null, was a missing dataset or the like)."""
    def todo(record: dict) -> bool:
        failed_in_training = record.get("status") == "failed" and record.get("failed_epoch") is not None
        return record.get("status") != "completed" and (retry_failed or not failed_in_training)

    return [r for r in grid.runs if todo(run_record(r))]


def dry_run_table(grid: Grid) -> str:
    keys = list(grid.axes)
    header = ["id", "status", *keys]
    rows = [[r.id, run_status(r), *(str(r.axes[k]) for k in keys)] for r in grid.runs]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), *map(line, rows)])


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


def launch_local(runs: list[GridRun], grid: Grid, workers: int, hardware: list[str] | None = None) -> Iterator[dict]:
    """The runs in `workers` long-lived worker processes, each handed its next run as soon as it reports
    one: imports, CUDA start-up and the dataset load are paid once per process, not once per run. With
    several GPUs, worker i trains on GPU i mod count. A worker that dies (killed, out of memory) fails its
    run and is replaced. Closing this iterator early kills the workers still training; their runs resume
    from `last.ckpt` next time."""
    gpus = _visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = list(runs)
    pool: list[Worker | None] = [None] * min(workers, len(runs))
    try:
        while True:
            for slot, worker in enumerate(pool):
                if pending and (worker is None or worker.idle):
                    if worker is None or not worker.alive:
                        pool[slot] = worker = Worker(gpus[slot % len(gpus)] if gpus else None)
                    worker.train(pending.pop(0), grid, threads, hardware)
            busy = [w for w in pool if w is not None and not w.idle]
            if not busy:
                return
            ready, _, _ = select.select([w.replies for w in busy], [], [])
            for worker in busy:
                if worker.replies in ready:
                    yield worker.result()
    finally:
        for worker in pool:
            if worker is not None:
                worker.stop()


class Worker:
    """A `python -m attnplace.grid.worker` process (see worker.py). Its own output outside runs, such as an
    import error, goes to the grid's stderr. It has a process group of its own, so Ctrl-C (or a time limit's
    SIGINT to the group) reaches only the grid, which stops its workers: one message, no worker tracebacks."""

    def __init__(self, gpu: str | None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        self.proc = subprocess.Popen([sys.executable, "-m", "attnplace.grid.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, preexec_fn=_die_with_parent,
                                     process_group=0)
        self.replies = self.proc.stdout
        self.run: GridRun | None = None  # the run it is training

    @property
    def idle(self) -> bool:
        return self.run is None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def train(self, run: GridRun, grid: Grid, threads: int, hardware: list[str] | None) -> None:
        run_dir = run.config.resolved_run_dir()
        with folder_errors(run_dir):  # a full or read-only disk stops the grid with one line
            spec = write_json(run_dir / "payload.json", make_payload(run, grid, threads, hardware))
        self.run = run
        self.proc.stdin.write(f"{spec}\n")
        self.proc.stdin.flush()

    def result(self) -> dict:
        """The result of its run: its reply, or a failure naming the log when the process died."""
        reply, run, self.run = self.replies.readline(), self.run, None
        if reply:
            return json.loads(reply)
        self.stop()
        log = run.config.resolved_run_dir() / "log.txt"
        return {"id": run.id, "status": "failed", "error": f"worker exited with {self.proc.returncode}; see {log}",
                "metrics": {}, "user_error": False}

    def stop(self) -> None:
        """Let it exit when idle (end of input); kill it in mid-run."""
        if not self.idle:
            self.proc.kill()
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.wait()
        self.replies.close()


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the grid process dies, so no orphan trains on behind a rerun."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the per-run lock in worker.py still prevents double training


RUNS_PER_GPU = 4  # `--workers auto` on a GPU; benchmarks/gpu.sh measures 1, 2, 4 and 8 at once
MAX_CPU_WORKERS = 8  # each worker holds its own copy of the dataset in memory


def auto_workers() -> int:
    """`--workers auto`: `RUNS_PER_GPU` runs per visible GPU, since one small CIFAR net leaves a GPU mostly
    idle; without a GPU one single-threaded run per CPU core, at most `MAX_CPU_WORKERS`: small convolutions
    gain more from parallel runs than from intra-op threads, and a 1-thread run does not stall when another
    process takes its core. Measured (benchmarks/cpu_workers.py, results/benchmarks/cpu_ceiling.md: fit path,
    resnet20 p4/se, CPU preset, 2-core Zen 3): 2 runs x 1 thread 267 img/s in all against 1 run x 2 threads
    229 img/s, after warm-up."""
    gpus = len(_visible_gpus())
    return RUNS_PER_GPU * gpus if gpus else max(1, min(os.cpu_count() or 1, MAX_CPU_WORKERS))


def _visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_grid(grid: Grid, *, launcher: str = "local", workers: int = 1, retry_failed: bool = False,
             address: str | None = None, gpus_per_run: float = 0.0, cpus_per_run: float = 1.0,
             allow_mixed_environments: bool = False, command: str | None = None,
             echo=lambda line: print(line, flush=True)) -> dict:
    """Run what is left of `grid`; return counts {"runs", "completed", "failed", "to_run"}. The call, with its
    `command` line, is added to the results folder's `calls.jsonl` (calls.py) however it ends.

    When the first runs to finish all failed on the same `UserError` (missing data, say), every other run
    would too: the grid stops its workers, starts no more runs and raises that error. A run refuses to train
    on other hardware than the grid's completed runs (`trained_on`) unless `allow_mixed_environments`.
    """
    with folder_errors(grid.results_dir, "results folder"):
        grid.results_dir.mkdir(parents=True, exist_ok=True)
        write_json(grid.results_dir / "grid.json", grid.describe())
    todo = plan(grid, retry_failed)
    echo(f"grid {grid.name}: {len(grid.runs)} runs, {len(grid.runs) - len(todo)} already recorded, "
         f"{len(todo)} to run ({launcher}, {workers} at once) -> {grid.results_dir}")
    with recorded_call(grid.results_dir, command, launcher, workers, address) as call:
        call["to_run"], errors = len(todo), {}
        try:
            hardware = None if allow_mixed_environments else trained_on(grid)
            follow(launch(todo, grid, launcher, workers, address, gpus_per_run, cpus_per_run, hardware), len(todo),
                   workers, echo, errors)
        finally:
            statuses = write_status(grid, errors)
            call.update(runs=len(grid.runs), completed=statuses.count("completed"), failed=statuses.count("failed"))
    return {key: call[key] for key in ("runs", "completed", "failed", "to_run")}


def trained_on(grid: Grid) -> list[str] | None:
    """The hardware (`record.hardware_of`) the grid's completed runs trained on; None before any says."""
    kinds = {hardware_of(record.get("environment") or {}) for run in grid.runs
             if (record := run_record(run)).get("status") == "completed"}
    return sorted(kinds - {None}) or None


def launch(todo: list[GridRun], grid: Grid, launcher: str, workers: int, address: str | None,
           gpus_per_run: float, cpus_per_run: float, hardware: list[str] | None) -> Iterator[dict]:
    if launcher == "ray":
        from .cluster import launch_ray

        return launch_ray(todo, grid, workers, address, gpus_per_run, cpus_per_run, hardware)
    return launch_local(todo, grid, workers, hardware)


def follow(results: Iterator[dict], total: int, workers: int, echo, errors: dict[str, str]) -> None:
    """Echo each run's result as it comes and note its error; stop the grid (close `results`, raise) when its
    first runs all failed on one `UserError`."""
    progress, first = Progress(total, workers), []
    for result in results:
        echo(progress.update(result))
        if result["status"] != "completed":
            errors[result["id"]] = result.get("error")
        if len(first) < min(STOP_AFTER, total):
            first.append(result)
            if len(first) == min(STOP_AFTER, total) and (mistake := shared_user_error(first)):
                results.close()
                raise UserError(f"{mistake} (the first {len(first)} runs failed on it; grid stopped)")


def shared_user_error(results: list[dict]) -> str | None:
    """The cause, when every one of `results` failed on a `UserError` of the same cause (a run folder that
    cannot be written names its run, but the cause, the disk, is shared); results of workers from before
    causes were reported compare their errors."""
    causes = {r.get("cause") or r.get("error") for r in results}
    return causes.pop() if len(causes) == 1 and all(r.get("user_error") for r in results) else None


def write_status(grid: Grid, errors: dict[str, str]) -> list[str]:
    """`status.json`: each run's status and error, from its record or else from what this call saw (a worker
    that died leaves its run's record `running`); returns the statuses."""
    status = {}
    for run in grid.runs:
        record = run_record(run)
        status[run.id] = {"status": record.get("status", "new"), "error": record.get("error") or errors.get(run.id)}
    with folder_errors(grid.results_dir, "results folder"):  # runs even as a full disk stops the grid
        write_json(grid.results_dir / "status.json", status)
    return [s["status"] for s in status.values()]

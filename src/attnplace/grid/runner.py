"""Execute a grid's runs, in local workers (local.py) or as Ray tasks (cluster.py), and keep the user informed.

Resumable by construction: a run whose `record.json` says `completed` is skipped, one that failed in
training is skipped unless `retry_failed`, and anything else (never started, killed mid-run, failed before
training began, e.g. on missing data) is run, resuming from its `last.ckpt`. Records and checkpoints are
written atomically, so killing the grid at any moment and running the same command again finishes it with
every run recorded once.
"""

import dataclasses
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from ..atomic import folder_errors, write_json
from ..errors import UserError
from ..terminal import say
from ..run.calls import recorded_call
from ..run.environment import cpu_has_bf16, cpu_model, hardware_here
from ..run.ledger import read_ledger, write_ledger
from ..run.record import read_record, trained_elsewhere
from ..run.result import RunResult
from .seed_blocks import Schedule, counted_blocks, read_blocks, schedule
from .local import launch_local, visible_gpus
from .spec import Grid, GridRun

STOP_AFTER = 2  # when a grid's first this-many finished runs all fail on one UserError, the grid stops


def run_record(run: GridRun) -> dict:
    return read_record(run.config.resolved_run_dir() / "record.json") or {}


def run_status(run: GridRun) -> str:
    return run_record(run).get("status", "new")


def plan(grid: Grid, retry_failed: bool = False, here: Collection[str] | None = None) -> list[GridRun]:
    """The runs still to do on hardware `here` (None: anywhere), block by block (`blocks.schedule`): all but
    the completed ones and, unless `retry_failed`, those that failed in training (a failure before training,
    `failed_epoch` null, was a missing dataset or the like)."""
    return schedule(grid, here, retry_failed).todo


def hardware_here_of(grid: Grid, launcher: str, allow_mixed_environments: bool,
                     address: str | None = None) -> list[str] | None:
    """The hardware kinds this call's runs train on: this machine's, for local workers and a local Ray (which
    declares it); on the Ray cluster at `address`, the kinds its nodes declare (cluster.py; None, anywhere, when
    none does); None when mixing is allowed. Each run's worker still checks its block's kind."""
    if allow_mixed_environments:
        return None
    if launcher == "ray" and address:
        from .cluster import cluster_hardware

        return cluster_hardware(address)
    return [hardware_here(grid.runs[0].config.trainer.device())]


def refuse_emulated_bf16(grid: Grid, launcher: str, address: str | None) -> None:
    """A grid that trains bf16 on this CPU, which has no native bf16, stops here: emulated bf16 runs at about a
    tenth of fp32's speed (results/benchmarks/cpu_ceiling.md) and would bind a seed block to this machine."""
    here = launcher == "local" or not address
    bf16 = [r for r in grid.runs if r.config.trainer.precision == "bf16-mixed" and r.config.trainer.device() == "cpu"]
    if here and bf16 and not cpu_has_bf16():
        raise UserError(f"grid {grid.name} trains trainer.precision=bf16-mixed on this CPU ({cpu_model()}), which "
                        "has no native bf16 (AVX512-BF16 or AMX) and would emulate it at a tenth of fp32's speed; "
                        "valid: a CPU with native bf16, trainer.precision=32-true, or --allow-emulated-bf16")


def dry_run_table(plan: Schedule) -> str:
    """The blocks, then one line per run: id, status, whether this call would train it, and its axes."""
    keys = list(plan.grid.axes)
    todo = {run.id for run in plan.todo}
    header = ["id", "status", "here", *keys]
    rows = [[r.id, run_status(r), "train" if r.id in todo else "-", *(str(r.axes.get(k, r.seed)) for k in keys)]
            for r in plan.grid.runs]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([*plan.lines(), line(header), *map(line, rows)])


@dataclass
class Progress:
    """Runs done / failed / left, the last result, and an ETA from the mean duration so far. A `retrying` result
    (a run handed to a fresh worker, local.py) is said but finishes nothing; a `busy` one (another call trains
    the run) is no failure: it is counted `elsewhere`."""

    total: int
    workers: int
    done: int = 0
    failed: int = 0
    elsewhere: int = 0
    started: float = field(default_factory=time.perf_counter)

    def update(self, result: RunResult) -> str:
        if result.status == "completed":
            self.done += 1
        elif result.status == "busy":
            self.elsewhere += 1
        elif result.status != "retrying":
            self.failed += 1
        finished = self.done + self.failed + self.elsewhere
        left = self.total - finished
        eta = f" | ETA {(time.perf_counter() - self.started) / finished * left / 60:.1f} min" if finished else ""
        last = result.error if result.status in ("retrying", "busy") else f"{result.status}: {result.error}"
        if (acc := result.metrics.get("test_acc")) is not None:
            last = f"test acc {acc:.2%}"
        elsewhere = f", elsewhere {self.elsewhere}" if self.elsewhere else ""
        return (f"[{finished}/{self.total}] done {self.done}, failed {self.failed}{elsewhere}, left {left}"
                f" | {result.id}: {last}{eta}")


RUNS_PER_GPU = 4  # `--workers auto` on a GPU; benchmarks/gpu.sh measures 1, 2, 4 and 8 at once
MAX_CPU_WORKERS = 8  # each worker holds its own copy of the dataset in memory


def auto_workers() -> int:
    """`--workers auto`: `RUNS_PER_GPU` runs per visible GPU, since one small CIFAR net leaves a GPU mostly
    idle; without a GPU one single-threaded run per CPU core, at most `MAX_CPU_WORKERS`: small convolutions
    gain more from parallel runs than from intra-op threads, and a 1-thread run does not stall when another
    process takes its core. Measured (benchmarks/cpu_workers.py, results/benchmarks/cpu_ceiling.md: fit path,
    resnet20 p4/se, CPU preset, 2-core Zen 3): 2 runs x 1 thread 267 img/s in all against 1 run x 2 threads
    229 img/s, after warm-up."""
    gpus = len(visible_gpus())
    return RUNS_PER_GPU * gpus if gpus else max(1, min(os.cpu_count() or 1, MAX_CPU_WORKERS))


def run_grid(grid: Grid, *, launcher: str = "local", workers: int = 1, retry_failed: bool = False,
             address: str | None = None, gpus_per_run: float = 0.0, cpus_per_run: float = 1.0,
             allow_mixed_environments: bool = False, allow_emulated_bf16: bool = False,
             command: str | None = None, echo=say) -> dict:
    """Run what is left of `grid`, block by block (`blocks.schedule`); return counts {"runs", "completed", "failed",
    "elsewhere" (runs another call is training as this one ends), "to_run"}. The call, with its `command` line, is added
    to the results folder's `calls.jsonl` (run/calls.py) however it ends, and grid.json (run/ledger.py) keeps every run
    it planned.

    When the first runs to finish all failed on the same `UserError` (missing data, say), every other run
    would too: the grid stops its workers, starts no more runs and raises that error. A block bound to other
    hardware than this machine's is left partial (replacement seeds take its place) unless
    `allow_mixed_environments`; a run refuses data other than the grid's earlier runs read. bf16 on a CPU
    without native bf16 is refused unless `allow_emulated_bf16` (`refuse_emulated_bf16`).
    """
    if not allow_emulated_bf16:
        refuse_emulated_bf16(grid, launcher, address)
    plan = schedule(grid, hardware_here_of(grid, launcher, allow_mixed_environments, address), retry_failed)
    grid, todo = plan.grid, plan.todo
    write_ledger(grid.results_dir, grid.describe(counted_blocks(grid, plan.blocks)))
    echo(f"grid {grid.name}: {len(grid.runs)} runs, {len(grid.runs) - len(todo)} not to run here, "
         f"{len(todo)} to run ({launcher}, {workers} at once) -> {grid.results_dir}")
    for line in [*grid.notes, *plan.lines()]:
        echo(line)
    with recorded_call(grid.results_dir, command, launcher, workers, address) as call:
        call["to_run"], errors = len(todo), {}
        try:
            checks = guards(plan, not allow_mixed_environments, retry_failed)
            follow(launch(todo, grid, launcher, workers, address, gpus_per_run, cpus_per_run, checks, echo),
                   len(todo), workers, echo, errors)
        finally:
            statuses = write_status(grid, errors)
            grid = as_on_disk(grid)
            write_ledger(grid.results_dir, grid.describe(counted_blocks(grid, read_blocks(grid))))
            call.update(runs=len(grid.runs), completed=statuses.count("completed"), failed=statuses.count("failed"),
                        elsewhere=sum(bool(trained_elsewhere(r.config.resolved_run_dir())) for r in grid.runs))
    return {key: call[key] for key in ("runs", "completed", "failed", "elsewhere", "to_run")}


def as_on_disk(grid: Grid) -> Grid:
    """`grid` with grid.json as it is now: the blocks this call's first write froze as counted (a block that
    completed since must not swap in), and the replacement seeds another call added meanwhile. Unreadable, or
    another grid's: the grid as this call loaded it."""
    try:
        ledger = read_ledger(grid.results_dir)
    except UserError:
        return grid
    return dataclasses.replace(grid, ledger=ledger) if ledger.definition == grid.definition else grid


def guards(plan: Schedule, check_hardware: bool = True, retry_failed: bool = False) -> dict[str, dict]:
    """What each run's worker checks before it trains (worker.py): its block's hardware kind (unless mixing is
    allowed), the data fingerprints the grid's earlier runs recorded (always), and whether a run that failed in
    training may train again (another call may have ended it since this one planned it)."""
    data = sorted({fp for block in plan.blocks for record in block.records if (fp := record.get("data_fingerprint"))})
    return {run_id: {"hardware": kind and check_hardware and [kind], "data_fingerprints": data or None,
                     "retry_failed": retry_failed} for run_id, kind in plan.kind_of.items()}


def launch(todo: list[GridRun], grid: Grid, launcher: str, workers: int, address: str | None,
           gpus_per_run: float, cpus_per_run: float, guards: dict[str, dict], echo=print) -> Iterator[RunResult]:
    """The runs' results as they come; `echo` says what Ray finds about its nodes' hardware (cluster.py)."""
    if launcher == "ray":
        from .cluster import launch_ray

        return launch_ray(todo, grid, workers, address, gpus_per_run, cpus_per_run, guards, echo)
    return launch_local(todo, grid, workers, guards)


def follow(results: Iterator[RunResult], total: int, workers: int, echo, errors: dict[str, str]) -> None:
    """Echo each run's result as it comes and note its error; stop the grid (close `results`, raise) at the
    first run that could not write its folder (a full or read-only disk fails every run after it too), or when
    its first runs all failed on one `UserError`. A run being retried (`retrying`) has no result yet."""
    progress, first = Progress(total, workers), []
    for result in results:
        echo(progress.update(result))
        if result.status in ("retrying", "busy"):
            continue
        if result.status != "completed":
            errors[result.id] = result.error
        if result.unwritable:
            results.close()
            raise UserError(f"{result.error} (grid stopped)")
        if len(first) < min(STOP_AFTER, total):
            first.append(result)
            if len(first) == min(STOP_AFTER, total) and (mistake := shared_user_error(first)):
                results.close()
                raise UserError(f"{mistake} (the first {len(first)} runs failed on it; grid stopped)")


def shared_user_error(results: list[RunResult]) -> str | None:
    """The cause, when every one of `results` failed on a `UserError` of the same cause (a run folder that
    cannot be written names its run, but the cause, the disk, is shared); results of workers from before
    causes were reported compare their errors."""
    causes = {r.cause or r.error for r in results}
    return causes.pop() if len(causes) == 1 and all(r.user_error for r in results) else None


def write_status(grid: Grid, errors: dict[str, str]) -> list[str]:
    """`status.json`: each run's status and error, from its record or else from what this call saw (a run whose
    workers all died before its first record has none); returns the statuses."""
    status = {}
    for run in grid.runs:
        record = run_record(run)
        status[run.id] = {"status": record.get("status", "new"), "error": record.get("error") or errors.get(run.id)}
    with folder_errors(grid.results_dir, "results folder"):  # runs even as a full disk stops the grid
        write_json(grid.results_dir / "status.json", status)
    return [s["status"] for s in status.values()]

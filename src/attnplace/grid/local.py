"""The local launcher: long-lived `python -m attnplace.grid.worker` processes (worker.py) on this machine.

A worker that dies under its run (the OOM killer's SIGKILL, say) is replaced and the run handed to the fresh
one, which resumes it from its `last.ckpt`, as Ray retries a task whose worker died: up to `WORKER_LOSS_TRIES`
tries in all. A run that kills its worker every time is recorded as failed at the epoch it reached, so that
later calls leave it alone unless --retry-failed instead of losing a worker on it every call.
"""

import contextlib
import ctypes
import os
import resource
import select
import signal
import subprocess
import sys
from collections.abc import Iterator

from ..atomic import folder_errors, write_json
from ..run.record import read_record
from ..run.result import RunResult
from .spec import Grid, GridRun
from .worker import make_payload

WORKER_LOSS_TRIES = 3  # tries in all, in one grid call, of a run whose worker process dies under it


def launch_local(runs: list[GridRun], grid: Grid, workers: int,
                 guards: dict[str, dict] | None = None) -> Iterator[RunResult]:
    """The runs in `workers` long-lived worker processes, each handed its next run as soon as it reports
    one: imports, CUDA start-up and the dataset load are paid once per process, not once per run. With
    several GPUs, worker i trains on GPU i mod count. A worker that dies (killed, out of memory) is replaced
    and its run handed again first (`after_loss`). Closing this iterator early kills the workers still
    training; their runs resume from `last.ckpt` next time."""
    gpus = visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending, losses = list(runs), {}
    pool: list[Worker | None] = [None] * min(workers, len(runs))
    try:
        while True:
            for slot, worker in enumerate(pool):
                if pending and (worker is None or worker.idle):
                    if worker is None or not worker.alive:
                        pool[slot] = worker = Worker(gpus[slot % len(gpus)] if gpus else None)
                    worker.train(pending.pop(0), grid, threads, guards or {})
            busy = [w for w in pool if w is not None and not w.idle]
            if not busy:
                return
            ready, _, _ = select.select([w.replies for w in busy], [], [])
            for worker in busy:
                if worker.replies in ready:
                    run, result = worker.run, worker.result()
                    yield result if result is not None else after_loss(run, worker, losses, pending)
    finally:
        for worker in pool:
            if worker is not None:
                worker.stop()


def after_loss(run: GridRun, worker: "Worker", losses: dict[str, int], pending: list[GridRun]) -> RunResult:
    """What becomes of a run whose `worker` died under it: handed again, first in line, until it has lost
    `WORKER_LOSS_TRIES` workers (`losses` counts them by run id), with a `retrying` result that counts as no
    finished run; then recorded as failed (`record_loss`), with a failed result."""
    losses[run.id] = tries = losses.get(run.id, 0) + 1
    if tries < WORKER_LOSS_TRIES:
        pending.insert(0, run)
        return RunResult(run.id, "retrying", f"{worker.death}; retrying (try {tries + 1} of {WORKER_LOSS_TRIES})")
    cause = f"{worker.death}, {tries} times"
    record_loss(run, cause, worker.peak_rss_mb)
    log = run.config.resolved_run_dir() / "log.txt"
    return RunResult.failed(run.id, f"{cause}; see {log}")


def record_loss(run: GridRun, cause: str, peak_rss_mb: int | None) -> None:
    """Record as failed a run that killed its worker every try, with `failed_epoch` the epoch it was in (so
    `plan` skips it unless --retry-failed) and the worker's peak memory when known, which tells an
    out-of-memory kill. A run killed before its first record was written has none to mark: it stays to do."""
    path = run.config.resolved_run_dir() / "record.json"
    if (record := read_record(path)) is None:
        return
    record.update(status="failed", error=cause, failed_epoch=len(record.get("history") or []))
    if peak_rss_mb is not None:
        record["worker_peak_rss_mb"] = peak_rss_mb
    with folder_errors(path.parent):
        write_json(path, record)


class Worker:
    """A `python -m attnplace.grid.worker` process (see worker.py). Its own output outside runs, such as an
    import error, goes to the grid's stderr. It has a process group of its own, so Ctrl-C (or a time limit's
    SIGINT to the group) reaches only the grid, which stops its workers: one message, no worker tracebacks."""

    command = [sys.executable, "-m", "attnplace.grid.worker"]  # `serve`s payload paths on stdin (worker.py)

    def __init__(self, gpu: str | None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=_die_with_parent, process_group=0)
        self.forked_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the grid's peak, past the fork
        self.replies = self.proc.stdout
        self.run: GridRun | None = None  # the run it is training
        self.peak_rss_mb: int | None = None  # known once it died under a run (`reap`)

    @property
    def idle(self) -> bool:
        return self.run is None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def death(self) -> str:
        """How the process ended: Popen's return code -N is signal N (9, SIGKILL, is the OOM killer's)."""
        code = self.proc.returncode
        return f"worker killed by signal {-code}" if code < 0 else f"worker exited with status {code}"

    def train(self, run: GridRun, grid: Grid, threads: int, guards: dict[str, dict]) -> None:
        run_dir = run.config.resolved_run_dir()
        with folder_errors(run_dir):  # a full or read-only disk stops the grid with one line
            spec = write_json(run_dir / "payload.json", make_payload(run, grid, threads, guards.get(run.id)))
        self.run = run
        self.proc.stdin.write(f"{spec}\n")
        self.proc.stdin.flush()

    def result(self) -> RunResult | None:
        """The reply for its run, or None when the process died under it (`death` says how)."""
        reply, self.run = self.replies.readline(), None
        if reply:
            return RunResult.from_json(reply)
        self.reap()
        return None

    def reap(self) -> None:
        """Wait for the dead process with `os.wait4`, which, unlike Popen's wait, gives its peak memory
        (`ru_maxrss`, KiB on Linux), and tell Popen its return code. Linux counts the grid's memory at the fork
        in that peak, so it tells the worker's own only where it exceeds the grid's peak then."""
        with contextlib.suppress(ChildProcessError):  # reaped already: the peak stays unknown
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            if usage.ru_maxrss > self.forked_kib:
                self.peak_rss_mb = round(usage.ru_maxrss / 1024)
        self.stop()

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


def visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]

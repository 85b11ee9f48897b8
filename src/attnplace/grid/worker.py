"""Grid workers: a process that trains the runs it is handed, one after another, and `run_logged`, which
trains one run with its output in the run's log and also serves as the Ray task.

`python -m attnplace.grid.worker` reads payload file paths from stdin, one a line (a payload file sits in
its run directory), trains each run with its output in that directory's `log.txt`, and reports each on
stdout as one JSON line (a `RunResult`, run/result.py). Imports, CUDA start-up and the dataset load are thus
paid once per worker, not once per run. A run that fails (NaN, an exception) is recorded as failed, and the
worker goes on.

A per-run lock file keeps two launchers (a rerun while an orphan still trains, two Ray retries) from
ever training the same run directory at once.
"""

import contextlib
import fcntl
import gc
import json
import os
import socket
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from ..data.load import dataset_fingerprint, keep_last_dataset
from ..atomic import folder_errors
from ..errors import UnwritableFolder, UserError
from ..quiet import quiet_libraries
from ..run.config import CanonicalConfig, Config
from ..run.config_io import from_dict
from ..run.environment import declared_hardware, hardware_here
from ..run.record import LOCK, error_line, read_record, run_ended, trained_elsewhere
from ..run.result import RunResult
from .spec import Grid, GridRun


def make_payload(run: GridRun, grid: Grid, threads: int, guards: dict | None = None) -> dict:
    """What a worker needs; CPU threads are split between parallel runs unless the config fixes them.
    `guards` (`runner.guards`): `hardware`, the kind this run's seed block is bound to, and `data_fingerprints`,
    what the grid's earlier runs read; the run must match both."""
    config = run.config.to_dict()
    config["trainer"]["threads"] = config["trainer"]["threads"] or threads
    return {"config": config, "grid": grid.name, "axes": run.axes, "cwd": os.getcwd(), "hardware": None,
            "data_fingerprints": None, "retry_failed": False, **(guards or {})}


def other_hardware(config: Config, hardware: list[str] | None) -> str | None:
    """Why this run must not train here, when its seed block trained on other hardware: under one seed every
    variant starts from the same weights and sees the same batches, and a run on another CPU or GPU model would
    compute other numbers (results/README.md, cifar10_jpeg_cpu, "Reproducing it"), so its block's differences
    would mix the two. A Ray task placed by a node's declared kind is that kind (`declared_hardware`), as its
    block's other runs were: there the probe only checks the declaration (grid/cluster.py)."""
    here = declared_hardware() or hardware_here(config.trainer.device())
    if not hardware or here in hardware:
        return None
    return (f"seed {config.seed}'s block trained on {' and '.join(hardware)}, this machine is {here}: the same "
            f"configs compute other numbers on other hardware, so the block's pairs would mix the two; finish the "
            f"block on the hardware it started on, or pass --allow-mixed-environments")


def other_data(config: Config, fingerprints: list[str] | None) -> str | None:
    """Why this run must not train on the data at its path: the grid's earlier runs read other data there (the
    file was replaced, or another machine holds another copy), and a table must not pool the two. Data that
    cannot be read is left to `fit`, which records why."""
    if not fingerprints:
        return None
    try:
        here = dataset_fingerprint(config.data.name, config.data.path, **(config.data.synthetic or {}))
    except (UserError, OSError):
        return None
    if here in fingerprints:
        return None
    return (f"the data at {config.data.path} (fingerprint {here}) is not what this grid's earlier runs read "
            f"(fingerprint {', '.join(fingerprints)}): a table never pools two datasets; restore their data, or "
            f"train into another results folder")


def run_payload(payload: dict) -> RunResult:
    """Train the run described by `payload` (`make_payload`); return its result (a run that another call ended
    after this one planned it is not trained again unless `retry_failed`):
    a failure on a `UserError` (e.g. missing data) says so, with that error's `cause`, since the grid's other
    runs are likely to repeat it, and whether it was its folder's (a full disk), which stops the grid at once.

    Relative paths in the config (the data, the output folder) mean what they meant where the grid was
    started, so the run works in the grid's folder `cwd`: a Ray worker on another node starts elsewhere.
    """
    from ..train.fit import fit

    try:  # before the run's (maybe relative) folder and data path are used
        os.chdir(payload.get("cwd", "."))  # payloads written before grids recorded their folder: "."
    except OSError:
        return RunResult.failed(Path(payload["config"]["run_dir"]).name,
                                f"the grid's folder {payload['cwd']} does not exist on {socket.gethostname()}; "
                                f"start the grid from a folder every node mounts at the same path", user_error=True)
    config = from_dict(CanonicalConfig, payload["config"])  # the grid's canonical config, read back
    if mismatch := (other_hardware(config, payload.get("hardware"))  # before the run's folder is touched
                    or other_data(config, payload.get("data_fingerprints"))):
        return RunResult.failed(config.run_id, mismatch, cause=mismatch, user_error=True)
    run_dir = config.resolved_run_dir()
    with folder_errors(run_dir):  # a folder that cannot take the lock: `run_logged` reports it
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / LOCK, "w")
    user_error = unwritable = False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return RunResult(config.run_id, "busy", f"being trained by another call ({trained_elsewhere(run_dir)})")
        ended = read_record(run_dir / "record.json") or {}
        if run_ended(ended) and not payload.get("retry_failed"):  # by another call, since this one planned it
            return RunResult(config.run_id, ended["status"], ended.get("error"), metrics=ended.get("metrics", {}))
        try:
            record = fit(config, grid=payload["grid"], axes=payload["axes"])
            error, cause = record.get("error"), None
        except Exception as err:  # fit has recorded it as failed; the traceback goes to this run's log
            # From the exception, not the record: a run folder that cannot be written keeps its last record.
            record = read_record(run_dir / "record.json") or {"status": "failed"}
            error, user_error, cause = error_line(err), isinstance(err, UserError), getattr(err, "cause", None)
            unwritable = isinstance(err, UnwritableFolder)
            traceback.print_exc()
    return RunResult(config.run_id, record.get("status"), error, cause, metrics=record.get("metrics", {}),
                     user_error=user_error, unwritable=unwritable)


def run_logged(payload: dict) -> RunResult:
    """`run_payload`, with this process's output appended to the run's `log.txt` beside its record (on a
    cluster too: there the record and log land in the shared results folder, not in Ray's node logs). A run
    folder that cannot take even the log or the lock fails the run as `unwritable`, not the worker process."""
    run_dir = Path(payload.get("cwd", "."), payload["config"]["run_dir"])
    try:
        with output_to(run_dir / "log.txt"):
            result = run_payload(payload)
    except UnwritableFolder as err:  # the log's or the lock's; `fit` reports its own
        result = RunResult.failed(run_dir.name, str(err), cause=err.cause, user_error=True, unwritable=True)
    forget_run()
    return result


def serve(requests: Iterable[str], replies: TextIO) -> None:
    """Train the run of each payload path in `requests`; write each result to `replies` as a JSON line."""
    for line in requests:
        result = run_logged(json.loads(Path(line.strip()).read_text()))
        replies.write(result.to_json() + "\n")
        replies.flush()


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Append this process's stdout and stderr to `log`, at the file-descriptor level, so that what
    Lightning, torch and C libraries print lands there too."""
    sys.stdout.flush()
    sys.stderr.flush()
    with folder_errors(log.parent):
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
    saved = [os.dup(1), os.dup(2)]
    with out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in enumerate(saved, start=1):
            os.dup2(copy, fd)
            os.close(copy)


def forget_run() -> None:
    """Release what the last run left in this process: its objects, its cached GPU memory (which other
    workers on the GPU can then use) and torch.compile's graphs of its model. Seeds, threads and
    determinism flags need no reset: `fit` and its Trainer set them for every run."""
    import torch

    gc.collect()
    torch.compiler.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str]) -> int:
    """`worker`: serve the runner (above). `worker PAYLOAD.json ...`: train those runs here, in the foreground,
    e.g. to watch one of a grid's runs again; the exit status is 0 when all completed."""
    quiet_libraries()
    keep_last_dataset()
    if argv:
        results = [run_payload(json.loads(Path(path).read_text())) for path in argv]
        return 0 if all(r.status == "completed" for r in results) else 1
    replies = os.fdopen(os.dup(1), "w")  # the runner's pipe; fd 1 itself must not carry runs' output
    os.dup2(2, 1)
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

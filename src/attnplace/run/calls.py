"""`calls.jsonl`: one line per grid call on a results folder, so that committed results say how they were made.

Each line holds the command, the host and device, when the call started and ended, its wall time, how many
runs it had to do (`to_run`), how many of the grid's `runs` were completed and failed when it ended, and how
it ended: `finished`, `interrupted` (Ctrl-C, or SIGINT from a time limit), `stopped: <one-line error>`, or
`error: <type: message>`. A process killed outright leaves no line; its runs' records still show every
training session. The runner writes it; the report lists it.
"""

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..atomic import append_line, folder_errors
from ..errors import UserError
from .environment import cpu_model
from .record import error_line
from .provenance import now

CALLS = "calls.jsonl"


@contextlib.contextmanager
def recorded_call(results_dir: Path, command: str | None, launcher: str, workers: int,
                  address: str | None = None) -> Iterator[dict]:
    """Yield this call's line for the runner to add its counts to; append it to `calls.jsonl` however the
    call ends (bar SIGKILL)."""
    call = {"command": command, "host": socket.gethostname(), "device": device(launcher, address),
            "launcher": launcher, "workers": workers, "started": now()}
    start, outcome = time.perf_counter(), "interrupted"
    try:
        yield call
        outcome = "finished"
    except UserError as err:
        outcome = f"stopped: {err}"
        raise
    except Exception as err:
        outcome = f"error: {error_line(err)}"
        raise
    finally:  # KeyboardInterrupt passes through here as "interrupted"
        call.update(ended=now(), wall_s=round(time.perf_counter() - start, 1), outcome=outcome)
        with folder_errors(results_dir, "results folder"):  # a full disk: one line, not a traceback
            append_line(results_dir / CALLS, json.dumps(call))


def device(launcher: str, address: str | None) -> str:
    """What the runs of a local call train on (the GPUs this process sees, else the CPU); a Ray call's runs
    train wherever the cluster puts them, and their records say where."""
    if launcher == "ray":
        return f"Ray cluster at {address or 'a local Ray'}"
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{len(gpus)} × {gpus[0]}" if gpus else cpu_model()


def read_calls(results_dir: Path) -> list[dict]:
    """The calls recorded in `results_dir` (none for a folder made before they were), unreadable lines left out."""
    path = results_dir / CALLS
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            call = json.loads(line)
            if isinstance(call, dict):
                calls.append(call)
    return calls


def describe_calls(calls: list[dict]) -> list[str]:
    """One Markdown line per call, then their total wall time."""
    lines = [f"`{c.get('command') or 'run_grid (Python)'}`: {c.get('started')}, {_hours(c.get('wall_s'))} on "
             f"{c.get('host')} ({c.get('device')}, {c.get('workers')} at once); {c.get('to_run', '?')} runs to do, "
             f"{c.get('completed', 0)} of the grid's {c.get('runs', '?')} completed; {c.get('outcome')}"
             for c in calls]
    total = sum(c.get("wall_s") or 0 for c in calls)
    return lines + ([f"{len(calls)} calls, {_hours(total)} of wall time in all"] if len(calls) > 1 else [])


def _hours(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "? wall time"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"

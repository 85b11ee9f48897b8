"""`record.json` on disk: reading a run's record, and the words a record states its end in (what a
run's result is, and how a failure is put in one line). `train/recorder.py` writes it while a run trains."""

import fcntl
import json
from pathlib import Path

from ..errors import UserError


def read_record(path: str | Path) -> dict | None:
    """The record at `path`, or None when there is none (or it cannot be read: then the run starts over)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def error_line(err: BaseException) -> str:
    """How a record (and a grid's progress line) states a failure: a `UserError` is already the one line to
    show; anything else is named by its type, first line only."""
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    return text.splitlines()[0] if text else type(err).__name__


def run_ended(record: dict) -> bool:
    """Whether a run has its result: completed, or failed in training (a diverged run is a result). A run
    that failed before training (its data missing, say) has none yet and is tried again."""
    return record.get("status") == "completed" or (record.get("status") == "failed"
                                                   and record.get("failed_epoch") is not None)


LOCK = ".lock"  # in a run folder: held (flock) by the process that trains the run (grid/worker.py)


def trained_elsewhere(run_dir: Path) -> str | None:
    """Who holds the run's lock, as `host H, pid P` from its record's last session, while another process
    trains the run (another call of its grid, say); None when no process holds it."""
    try:
        with open(run_dir / LOCK) as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        session = ((read_record(run_dir / "record.json") or {}).get("sessions") or [{}])[-1]
        return f"host {session.get('host', '?')}, pid {session.get('pid', '?')}"
    except OSError:  # no lock file: never trained by a grid worker
        return None

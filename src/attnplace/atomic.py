"""Atomic file writes: a reader (or a killed process) sees the old file or the new one, never half of one;
lines appended to a log that several processes share; and a folder that cannot be written, which is the
user's to fix, as one line."""

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UnwritableFolder


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def append_line(path: str | Path, line: str) -> None:
    """Add one line to the log at `path` in a single O_APPEND write: two processes appending at once both keep
    their line (a read-and-rename would keep one), and the earlier lines are never rewritten. A line torn by a
    crash is ended first, so that it stays one unreadable line and does not swallow this one."""
    with open(path, "a+b") as log:
        torn = log.tell() > 0 and (log.seek(-1, os.SEEK_END), log.read(1))[1] != b"\n"
        log.write((b"\n" if torn else b"") + line.encode("utf-8") + b"\n")


@contextlib.contextmanager
def folder_errors(folder: Path, what: str = "run folder"):
    """An OSError inside (a full, read-only or unwritable disk) becomes an `UnwritableFolder` naming `folder`
    and the OS error. Its `cause` names the disk's place, `folder`'s parent, not the folder: a grid whose run
    folders all fail on it sees one cause."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        raise UnwritableFolder(f"cannot write the {what} {folder}: {reason}",
                               cause=f"cannot write the {what}s in {folder.parent}: {reason}") from None

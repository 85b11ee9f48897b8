"""The dataset registry and what every reader hands back: a `Source` (how to key the cache, how to decode).

Readers register with `@DATASETS.register(name)` and are called as `reader(path, **options) -> Source`.
They locate their files eagerly (so a missing path fails before any work) and decode lazily, because a
cache hit needs only the fingerprint.
"""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError
from ...registry import Registry
from ..splits import Splits

DATASETS: Registry[Callable[..., "Source"]] = Registry("dataset")


@dataclass(frozen=True)
class Source:
    """A located dataset. `location` is the file or folder the data lives in (the cache may sit beside it);
    `fingerprint` returns a content hash, or is None for data too cheap to cache."""

    name: str
    location: Path | None
    fingerprint: Callable[[], str] | None
    read: Callable[[], Splits]


def require_path(name: str, path: Path | None, layout: str) -> Path:
    """`path` made absolute, or a UserError naming the path and the layout `name` expects."""
    if path is None:
        raise UserError(f"dataset {name!r} needs a path: {layout}")
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"dataset {name!r}: {path} does not exist; expected {layout}")
    return path


def file_digest(files: Iterable[Path]) -> str:
    """sha256 over the bytes of `files` (names included, so swapping two files changes it)."""
    h = hashlib.sha256()
    for file in files:
        h.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def stat_digest(root: Path, files: Iterable[Path]) -> str:
    """sha256 over (path relative to `root`, size, mtime_ns) of `files`: re-reading 60k images just to hash
    them would cost as much as decoding them."""
    h = hashlib.sha256()
    for file in files:
        st = file.stat()
        h.update(f"{file.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()

"""The decoded-dataset cache: one `torch.save` file per dataset content, written atomically.

Where: `$ATTNPLACE_CACHE` when set (an explicit choice wins); otherwise beside the data
(`<data>.attnplace-cache/`) when that folder may be written, else `~/.cache/attnplace`.
A file that fails to load is reported and rebuilt, never trusted.
"""

import os
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_write
from .splits import Splits

FORMAT = 1  # bump when the stored dict changes, so old files are simply not found


def cache_dirs(location: Path | None) -> list[Path]:
    if env := os.environ.get("ATTNPLACE_CACHE"):
        return [Path(env).expanduser()]
    beside = [location.parent / f"{location.name}.attnplace-cache"] if location is not None else []
    return beside + [Path.home() / ".cache" / "attnplace"]


def file_name(name: str, fingerprint: str) -> str:
    return f"{name}-v{FORMAT}-{fingerprint[:20]}.pt"


def find(name: str, fingerprint: str, location: Path | None) -> Path | None:
    """The first existing cache file for this content, or None."""
    return next((f for d in cache_dirs(location) if (f := d / file_name(name, fingerprint)).is_file()), None)


def load(file: Path) -> Splits | None:
    try:
        return Splits(**torch.load(file, weights_only=True))
    except Exception as exc:  # truncated, garbage, or an unexpected layout: rebuild rather than guess
        warnings.warn(f"ignoring unreadable dataset cache {file} ({type(exc).__name__}: {exc}); rebuilding it")
        return None


def store(splits: Splits, name: str, fingerprint: str, location: Path | None) -> Path | None:
    """Write to the first usable cache folder, atomically: a reader never sees half a file, and
    concurrent writers (DDP ranks) cannot interleave."""
    state = {field: getattr(splits, field) for field in splits.__dataclass_fields__}
    for folder in cache_dirs(location):
        if not _may_write(folder):
            continue
        try:
            return atomic_write(folder / file_name(name, fingerprint), lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError):  # a full disk surfaces as RuntimeError from torch's zip writer
            continue
    warnings.warn(f"no writable dataset cache folder among {', '.join(map(str, cache_dirs(location)))}; "
                  f"the next run decodes {name} again")
    return None


def _may_write(folder: Path) -> bool:
    """Whether the nearest existing ancestor is writable, honouring read-only permission bits even as root
    (root may write anywhere, which would litter a shared read-only data folder)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return bool(existing.stat().st_mode & 0o222) and os.access(existing, os.W_OK)

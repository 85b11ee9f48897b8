"""Checkpoints that survive a crash: each is written whole beside its target and renamed into place, and a run
resumes only from one it can read, falling back to an earlier one or to the start instead of stopping."""

import io
import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..atomic import atomic_write
from .recorder import RunRecorder
from ..run.record import error_line


class RunFolderCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its own folder, flushed to the disk, and renames it over
    the old one, so a kill, a power cut or a full disk leaves the previous checkpoint whole. (Lightning's own
    save writes through fsspec, whose temporary file sits in the system temp dir: where that is another
    filesystem, the final move is a copy, which a kill cuts short.) Serialised in memory first, as Lightning
    does, so that a failed write surfaces as the OSError it is, not as torch's zip writer's RuntimeError."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda tmp: write_synced(tmp, buffer.getbuffer()))


def write_synced(path: Path, data) -> None:
    """Write and fsync, so that the rename that follows never publishes a file whose bytes are not on disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def resume_point(run_dir: Path) -> tuple[Path | None, str | None]:
    """The checkpoint to resume from, and a line saying what was done instead when `last.ckpt` is unusable.

    `last.ckpt` when it can be read; else `best.ckpt`, an earlier epoch end, when that can be read; else
    none (a fresh start). A file that cannot be read (a truncated zip, say) is moved aside as
    `<name>.unreadable`, kept for a look, never deleted. No `last.ckpt` at all means a fresh start, as ever.
    """
    last, best = run_dir / "last.ckpt", run_dir / "best.ckpt"
    if not last.exists():
        return None, None
    problem = unusable(last)
    if problem is None:
        return last, None
    fallback = unusable(best) if best.exists() else "there is no best.ckpt"
    if fallback is None:
        return best, f"{problem}; resuming from best.ckpt"
    return None, f"{problem}; {fallback}; starting the run over"


def unusable(path: Path) -> str | None:
    """Why the run cannot resume from `path` (moving it aside when it cannot be read), or None if it can."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, garbage: torch raises RuntimeError, EOFError, UnpicklingError, ...
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        return f"{path.name} could not be read ({error_line(err)}), moved to {aside.name}"
    if not ends_its_history(checkpoint):
        return f"{path.name} was not saved at the end of the last epoch its history records"
    return None


def ends_its_history(checkpoint: dict) -> bool:
    """Whether `checkpoint` was saved at the end of the last epoch in the run history it carries, so that a run
    resumed from it records each epoch once: what every checkpoint saved at an epoch's end holds."""
    state = checkpoint.get("callbacks", {}).get(RunRecorder.__qualname__)
    return state is not None and len(state["history"]) == checkpoint["epoch"] + 1

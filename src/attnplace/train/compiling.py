"""torch.compile's on-disk cache, and what compiling cost a run.

Where the cache lives: `<output_dir>/.compile-cache/torch-<version>/<hardware kind>/` (TORCHINDUCTOR_CACHE_DIR),
unless the user set TORCHINDUCTOR_CACHE_DIR. Beside the results, so a study resumed later finds its graphs,
and so do the nodes of a Ray cluster, which share the results folder. It is safe to share exactly where the
folder's name says: torch's own keys cover the graph, its inputs and the torch version, and a folder per
hardware kind keeps the kernels generated for one CPU's vector units (or one GPU) away from another. It is not
keyed on attnplace's source, which changes with every commit while the graphs do not.

A grid worker forgets compiled graphs after every run (`worker.forget_run`), so each run compiles again, from
this cache when it is warm (seconds); the record's `compile` says how long it took and how warm it was.
"""

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from ..run.record import error_line

def compile_cache_dir(output_dir: str | Path, hardware: str, torch_version: str | None = None) -> Path:
    import torch

    kind = re.sub(r"[^A-Za-z0-9.]+", "-", hardware).strip("-").lower()
    return Path(output_dir) / ".compile-cache" / f"torch-{torch_version or torch.__version__}" / kind


def use_compile_cache(folder: Path) -> Path:
    """Point inductor at `folder`, which it reads at each compile, unless the user chose a cache folder of their
    own: TORCHINDUCTOR_CACHE_DIR set to anything but torch's default (which torch writes there on import) or
    an attnplace cache folder (which an earlier run of this process set)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    ours = current in (None, default_cache_dir()) or ".compile-cache" in Path(current).parts
    chosen = folder.resolve() if ours else Path(current)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(chosen)
    return chosen


# What torch raises when a graph fails to compile (by name: the second exists only in newer torch).
COMPILE_FAILURES = ("torch._dynamo.exc.BackendCompilerFailed", "torch._inductor.exc.InductorError")


class CacheFault(Exception):
    """A compiled run failed to compile with a cache it found on disk, which has been moved aside: entries cut
    short by a disk that filled as they were written load as modules without their code (torch then raises
    `AttributeError: module 'torch._inductor.runtime.compile_tasks.…' has no attribute 'call'`). One bad entry
    would stop every run that shares the cache (a study's blocks, its resumed calls, its Ray nodes)."""


def cache_identity(folder: Path) -> int | None:
    """The cache folder's inode, None when there is none yet: a run that started cold cannot blame the cache."""
    try:
        return folder.stat().st_ino
    except OSError:
        return None


def cache_fault(err: BaseException, folder: Path, identity: int | None) -> CacheFault | None:
    """When `err` is a compile failure and the run found a cache in `folder` (`identity`, `cache_identity` at its
    start): the cache, moved aside to `<folder>.unreadable-<UTC time>` (unless another run sharing it has already
    replaced it), as a `CacheFault` that says so in one line. None for any other failure."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(err).__mro__}
    if identity is None or not names & set(COMPILE_FAILURES):
        return None
    aside = folder.with_name(f"{folder.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    if cache_identity(folder) == identity:
        folder.rename(aside)
    lines = [line for line in str(err).splitlines() if line.strip()]
    cause = lines[1] if len(lines) > 1 and lines[0].endswith("raised:") else error_line(err)  # backend=… raised:
    return CacheFault(f"the compile cache {folder} could not be read ({cause}); moved to {aside.name}, compiling "
                      f"afresh")


def forget_compiled() -> None:
    """Drop the graphs and generated modules this process holds, so the next compile reads only the new cache."""
    import torch
    from torch._inductor.utils import clear_inductor_caches

    torch.compiler.reset()
    clear_inductor_caches()


def start_counting() -> None:
    """Forget earlier runs' compile counters in this process, so `compile_summary` counts one run's."""
    from torch._dynamo.utils import clear_compilation_metrics, counters

    counters.clear()
    clear_compilation_metrics()


def compile_summary() -> dict:
    """What compiling cost since `start_counting`: graphs compiled, recompiles (a guard failed: a frame was
    compiled again for other inputs or modes; evaluation's no_grad is one, once per run) with their reasons,
    seconds spent compiling (forward and backward), and the cache:
    `warm` when every compiled graph came from the on-disk cache, `cold` when none did, else `partly warm`."""
    from torch._dynamo.utils import counters, get_compilation_metrics

    metrics = get_compilation_metrics()
    seconds = sum((m.entire_frame_compile_time_s or 0) + (m.backward_cumulative_compile_time_us or 0) / 1e6
                  for m in metrics)
    hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
    cache = "warm" if hits and not misses else "cold" if misses and not hits else "partly warm" if hits else None
    reasons = [m.recompile_reason for m in metrics if getattr(m, "recompile_reason", None)]
    return {"graphs": counters["stats"]["unique_graphs"], "recompiles": len(reasons),
            "recompile_reasons": sorted(set(reasons))[:5],
            "seconds": round(seconds, 2), "cache": cache, "cache_hits": hits, "cache_misses": misses,
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}

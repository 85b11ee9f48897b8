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
from pathlib import Path

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


def start_counting() -> None:
    """Forget earlier runs' compile counters in this process, so `compile_summary` counts one run's."""
    from torch._dynamo.utils import clear_compilation_metrics, counters

    counters.clear()
    clear_compilation_metrics()


def compile_summary() -> dict:
    """What compiling cost since `start_counting`: graphs compiled, recompiles (a guard failed: a frame was
    compiled again for other inputs or modes; evaluation's no_grad is one, once per run) with their reasons, seconds spent compiling (forward and backward), and the cache:
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

"""Where a run computes: the processor and the kernels torch picked on it (the one reader of /proc/cpuinfo), the
hardware kind a seed block is bound to, and how a Ray node declares its kind."""

import functools
import platform
import sys
from pathlib import Path
from urllib.parse import quote, unquote


CPUINFO = Path("/proc/cpuinfo")


def read_cpu_info(path: Path) -> dict[str, str]:
    """The first processor's `key: value` lines of `path` (empty where there is none: not Linux)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    info = {}
    for line in lines:
        if not line.strip():
            break  # the first processor's block ends; the others repeat it
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


@functools.cache
def cpu_info() -> dict[str, str]:
    """This machine's CPU as /proc/cpuinfo describes it, read once: the one reader of its name and flags."""
    return read_cpu_info(CPUINFO)


def cpu_has_bf16(cpuinfo: Path | None = None) -> bool:
    """Whether this CPU (or the one `cpuinfo` describes) computes bf16 natively (AVX512-BF16 or AMX-BF16), read
    from its flags: without them bf16 autocast is emulated, far slower than fp32."""
    info = cpu_info() if cpuinfo is None else read_cpu_info(cpuinfo)
    return bool({"avx512_bf16", "amx_bf16"} & set(info.get("flags", "").split()))


def cpu_model() -> str:
    """The processor's name and the vector kernels torch picked on it (AVX2, AVX512, ...): fp32 results on a
    CPU differ in the last bits between processors and kernels, and over an epoch of SGD those bits grow into
    different weights, so a run is reproduced bit for bit only on the same kind of CPU."""
    import torch

    name = cpu_info().get("model name") or platform.processor() or platform.machine()
    return f"{name}, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def hardware_of(environment: dict) -> str | None:
    """The processor whose kernels computed a run's numbers, from its record's `environment`: the GPU's name
    for a CUDA run, else `cpu_model`; None for a record without one (older than `cpu`, or failed before
    training). The same config trains to other numbers on other hardware, so a table keeps to one."""
    device = environment.get("device") or ""
    return device.split(":", 1)[1].strip() if device.startswith("cuda") else environment.get("cpu")


def hardware_kind(environment: dict) -> str | None:
    """The hardware kind a run's seed block is bound to: what the Ray node it trained on declared at
    `ray start` (docs/grids.md, "On a cluster"), else what its probe saw (`hardware_of`)."""
    return environment.get("declared_hardware") or hardware_of(environment)


HARDWARE_RESOURCE = "hardware:"  # a Ray node of hardware kind K declares resource "hardware:K" (escaped)


DECLARED_AMOUNT = 1000  # what a node declares of it: far more than the runs it will ever hold at once


def hardware_resource(kind: str) -> str:
    """The Ray resource by which a node declares hardware kind `kind` at `ray start` (docs/grids.md, "On a cluster").
    Ray hands a node's resources to its raylet as one comma-separated list, so a kind's commas (and `%`, quotes,
    anything outside printable ASCII) are percent-escaped; the rest stays readable in `ray status`."""
    return HARDWARE_RESOURCE + quote(kind, safe=" ()@+:/")


def resource_hardware(resource: str) -> str | None:
    """The hardware kind a Ray resource declares (`hardware_resource` undone); None for any other resource."""
    return unquote(resource.removeprefix(HARDWARE_RESOURCE)) if resource.startswith(HARDWARE_RESOURCE) else None


def declared_hardware() -> str | None:
    """The hardware kind this Ray task was placed by: the declared kind whose resource it holds (grid/cluster.py
    pins each seed block to one). None outside a Ray task, or for a task that asked for no kind."""
    ray = sys.modules.get("ray")  # imported only where a Ray task runs this: ray is optional
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None
    return next(filter(None, map(resource_hardware, ray.get_runtime_context().get_assigned_resources())), None)


def hardware_here(device: str) -> str:
    """`hardware_of` a run that trains on `device` (`cuda` or `cpu`) on this machine."""
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else cpu_model()

"""`record.json`: everything a results table needs about one run, rewritten atomically after every epoch.

The history lives in the callback's state, which Lightning saves inside `last.ckpt`; a resumed run
therefore continues the same history and ends with the same record as an uninterrupted one.
"""

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import lightning as L

from ..atomic import write_json
from ..errors import UserError
from ..models import gate_values
from .config import Config
from .sections import TrainerConfig


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


def environment(trainer: L.Trainer, settings: TrainerConfig) -> dict:
    """Versions, device, host and CPU, and the trainer settings as resolved there (`settings.resolved()`); on a
    Ray node that declared its hardware kind, that kind too (`declared_hardware`) beside what the probe saw."""
    import timm
    import torch
    import torchvision

    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cores"
    return {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "lightning": L.__version__, "timm": timm.__version__, "device": f"{device.type}: {name}",
        "precision": str(trainer.precision), "channels_last": settings.channels_last, "compile": settings.compile,
        "torch_threads": torch.get_num_threads(), "host": socket.gethostname(), "cpu": cpu_model(),
        "declared_hardware": declared_hardware(),
    }


def cpu_model() -> str:
    """The processor's name and the vector kernels torch picked on it (AVX2, AVX512, ...): fp32 results on a
    CPU differ in the last bits between processors and kernels, and over an epoch of SGD those bits grow into
    different weights, so a run is reproduced bit for bit only on the same kind of CPU."""
    import torch

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def hardware_of(environment: dict) -> str | None:
    """The processor whose kernels computed a run's numbers, from its record's `environment`: the GPU's name
    for a CUDA run, else `cpu_model`; None for a record without one (older than `cpu`, or failed before
    training). The same config trains to other numbers on other hardware, so a table keeps to one."""
    device = environment.get("device") or ""
    return device.split(":", 1)[1].strip() if device.startswith("cuda") else environment.get("cpu")


def hardware_kind(environment: dict) -> str | None:
    """The hardware kind a run's seed block is bound to: what the Ray node it trained on declared at
    `ray start` (README, "On a cluster"), else what its probe saw (`hardware_of`)."""
    return environment.get("declared_hardware") or hardware_of(environment)


HARDWARE_RESOURCE = "hardware:"  # a Ray node of hardware kind K declares resource "hardware:K" (escaped)
DECLARED_AMOUNT = 1000  # what a node declares of it: far more than the runs it will ever hold at once


def hardware_resource(kind: str) -> str:
    """The Ray resource by which a node declares hardware kind `kind` at `ray start` (README, "On a cluster").
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


def run_ended(record: dict) -> bool:
    """Whether a run has its result: completed, or failed in training (a diverged run is a result). A run
    that failed before training (its data missing, say) has none yet and is tried again."""
    return record.get("status") == "completed" or (record.get("status") == "failed"
                                                   and record.get("failed_epoch") is not None)


def hardware_here(device: str) -> str:
    """`hardware_of` a run that trains on `device` (`cuda` or `cpu`) on this machine."""
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else cpu_model()


def session() -> dict:
    """Where and when this process trains a run. A record keeps one per training session: a run killed and
    resumed, or retried by Ray on another node after its node was lost, lists each with the epoch it resumed
    from (`from_epoch`, set when training starts) and the last time it wrote the record (`ended`). On a Ray
    task it also names the node and the GPUs Ray assigned, beside the `CUDA_VISIBLE_DEVICES` the task saw.
    `code` says which attnplace trained it (`code_version`): a run resumed under other code shows it here.
    `resume_note`, only where there was one, says what the session did about a checkpoint it could not
    resume from (`checkpoint.resume_point`)."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": now(), "ended": None, "from_epoch": 0,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "code": code_version()}
    ray = sys.modules.get("ray")  # imported only where a Ray task runs this: ray is optional
    if ray is not None and ray.is_initialized():
        info.update(ray_node=ray.get_runtime_context().get_node_id(), ray_gpu_ids=[str(g) for g in ray.get_gpu_ids()])
    return info


@functools.cache
def code_version() -> dict:
    """The attnplace source that runs: `source_sha256` (the first 12 hex digits of a hash over the package's
    .py files, which identifies the code even in a copy outside git) and `git`, the commit when the package
    sits in a git checkout (`+dirty` when its source differs from that commit), else None."""
    package = Path(__file__).resolve().parents[1]
    return {"source_sha256": source_hash(package), "git": git_commit(package)}


def source_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_commit(folder: Path) -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an installed wheel)
        return None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunRecorder(L.Callback):
    """The one owner of a run's record: builds it, keeps the per-epoch history and training throughput, and
    writes `record.json` after every epoch and when the run ends. `fit` tells it what it learns through the
    methods below, in the order the record's keys appear (`describe`, then `add_metrics` after the test).

    Throughput counts training steps and data only (validation is not throughput). The first epoch pays
    for warm-up (allocator, cuDNN autotuning, `torch.compile`), so `train_images_per_s` is taken over the
    later epochs, which compares with a plain loop timed after warm-up; `first_epoch_images_per_s` has it.
    """

    def __init__(self, path: Path, record: dict | None = None):
        """`record`: what the record starts with (`for_run` gives a run's), copied: from here the recorder owns it."""
        self.path, self.record = path, dict(record or {})
        self.record.setdefault("sessions", [session()])
        self.history: list[dict] = []
        self.elapsed = 0.0  # wall time of earlier sessions of this run (before a resume)
        self._session_start = time.perf_counter()
        self._epoch_start: float | None = None
        self._epoch_seconds, self._epoch_images = 0.0, 0

    @classmethod
    def for_run(cls, run_dir: Path, config: Config, grid: str | None = None, axes: dict | None = None,
                earlier_sessions: list[dict] = ()) -> "RunRecorder":
        """The recorder of a run's `record.json`, which continues the sessions of its earlier records."""
        return cls(run_dir / "record.json", {
            "id": config.run_id, "grid": grid, "status": "running", "error": None, "failed_epoch": None,
            "axes": axes or {}, "config": config.to_dict(), "run_dir": str(run_dir),
            "sessions": [*earlier_sessions, session()]})

    def describe(self, initial_gates: dict, params: int, flops: int, environment: dict,
                 data_fingerprint: str | None = None) -> None:
        """What trains and where: the gates' values before training (the history holds epoch ends only), the
        network's size, the environment the run resolved to, and the content fingerprint of the dataset it
        trains and is tested on (`Splits.fingerprint`), by which a study refuses to pool other data."""
        self.record.update(initial_gates=initial_gates, metrics={"params": params, "flops": flops},
                           environment=environment, data_fingerprint=data_fingerprint)

    def note(self, key: str, value) -> None:
        """What this session alone did, in its session: `resume_note`, what it had to work around before training
        (an unreadable checkpoint); `compile`, what compiling cost it (`compiling.compile_summary`)."""
        self.record["sessions"][-1][key] = value

    def add_metrics(self, metrics: dict) -> None:
        self.record["metrics"].update(metrics)

    @property
    def metrics(self) -> dict:
        return self.record.get("metrics", {})

    def fail_before_training(self, err: BaseException) -> None:
        """A run that could not start (its data could not be read, say) is recorded too, so that a grid can say
        why: with its error, no metrics and no history."""
        write_json(self.path, {**self.record, "status": "failed", "error": error_line(err), "metrics": {},
                               "history": []})

    def on_train_start(self, trainer, module):
        self.record["sessions"][-1]["from_epoch"] = len(self.history)  # after a resume has restored the history

    # -- throughput: from the start of the training epoch to the start of validation (or the epoch end)
    def on_train_epoch_start(self, trainer, module):
        self._epoch_start = time.perf_counter()
        self._epoch_seconds, self._epoch_images = 0.0, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._epoch_images += len(batch[1])

    def on_validation_start(self, trainer, module):
        self._stop_clock()

    def _stop_clock(self):
        if self._epoch_start is not None:
            self._epoch_seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_train_epoch_end(self, trainer, module):
        self._stop_clock()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.history.append({
            "epoch": trainer.current_epoch,
            "train_loss": metrics.get("train_loss"),
            "train_acc": metrics.get("train_acc"),
            "val_loss": metrics.get("val_loss"),
            "val_acc": metrics.get("val_acc"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "gates": gate_values(module.model),
            "masks": {k.removeprefix("mask/"): v for k, v in metrics.items() if k.startswith("mask/")},
            "train_images": self._epoch_images,
            "train_seconds": round(self._epoch_seconds, 4),
        })
        self.write("running")

    def throughput(self) -> dict:
        """Images/s after the first epoch (over all epochs if there is only one), and of the first epoch."""
        def rate(epochs):
            seconds = sum(h["train_seconds"] for h in epochs)
            return sum(h["train_images"] for h in epochs) / seconds if seconds else None

        return {"train_images_per_s": rate(self.history[1:] or self.history),
                "first_epoch_images_per_s": rate(self.history[:1])}

    def duration(self) -> float:
        return self.elapsed + time.perf_counter() - self._session_start

    def write(self, status: str, **fields) -> dict:
        self.record.update(status=status, history=self.history, **fields)
        self.record["sessions"][-1]["ended"] = now()
        self.record.setdefault("metrics", {}).update(duration_s=round(self.duration(), 2), **self.throughput())
        write_json(self.path, self.record)
        return self.record

    def state_dict(self) -> dict:
        return {"history": self.history, "elapsed": self.duration()}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.elapsed = state["history"], state["elapsed"]
        self._session_start = time.perf_counter()

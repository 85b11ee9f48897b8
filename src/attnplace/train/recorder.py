"""`record.json`: everything a results table needs about one run, rewritten atomically after every epoch.

The history lives in the callback's state, which Lightning saves inside `last.ckpt`; a resumed run
therefore continues the same history and ends with the same record as an uninterrupted one."""

import os
import platform
import socket
import time
from pathlib import Path

import lightning as L

from ..atomic import write_json
from ..models import gate_values
from ..run.config import Config
from ..run.environment import cpu_model, declared_hardware
from ..run.provenance import now, session
from ..run.record import error_line
from ..run.sections import TrainerConfig


def environment(trainer: L.Trainer, settings: TrainerConfig) -> dict:
    """Versions, device, host and CPU, and the trainer settings as the canonical config resolved them; on a
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


# What a session that trained wrote (`describe`, the epochs' history), kept by a later one that fails to start.
TRAINED = ("initial_gates", "metrics", "environment", "data_fingerprint", "history")


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
                previous: dict | None = None) -> "RunRecorder":
        """The recorder of a run's `record.json`, which continues its `previous` record: its sessions, and what
        they trained (`TRAINED`) until this session describes itself."""
        previous = previous or {}
        return cls(run_dir / "record.json", {
            **{key: previous[key] for key in TRAINED if key in previous},
            "id": config.run_id, "grid": grid, "status": "running", "error": None, "failed_epoch": None,
            "axes": axes or {}, "config": config.to_dict(), "run_dir": str(run_dir),
            "sessions": [*previous.get("sessions", []), session()]})

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
        why: with its error, and no metrics or history of its own. A run that trained in an earlier session
        keeps what that session recorded (`TRAINED`, from `for_run`): its last.ckpt still holds those epochs, and
        the hardware they ran on binds its seed block."""
        write_json(self.path, {"metrics": {}, "history": [], **self.record, "status": "failed",
                               "error": error_line(err)})

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

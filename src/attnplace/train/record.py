"""`record.json`: everything a results table needs about one run, rewritten atomically after every epoch.

The history lives in the callback's state, which Lightning saves inside `last.ckpt`; a resumed run
therefore continues the same history and ends with the same record as an uninterrupted one.
"""

import json
import os
import platform
import socket
import time
from pathlib import Path

import lightning as L

from ..atomic import write_json
from ..models import gate_values


def read_record(path: str | Path) -> dict | None:
    """The record at `path`, or None when there is none (or it cannot be read: then the run starts over)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def environment(trainer: L.Trainer) -> dict:
    import timm
    import torch
    import torchvision

    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cores"
    return {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "lightning": L.__version__, "timm": timm.__version__, "device": f"{device.type}: {name}",
        "precision": str(trainer.precision), "torch_threads": torch.get_num_threads(), "host": socket.gethostname(),
    }


class RunRecorder(L.Callback):
    """Keeps the per-epoch history and training throughput, and writes `record.json` after every epoch."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record
        self.history: list[dict] = []
        self.train_seconds = 0.0  # training steps and data only: validation is not throughput
        self.train_images = 0
        self.elapsed = 0.0  # wall time of earlier sessions of this run (before a resume)
        self._session_start = time.perf_counter()
        self._epoch_start: float | None = None

    # -- throughput: from the start of the training epoch to the start of validation (or the epoch end)
    def on_train_epoch_start(self, trainer, module):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.train_images += len(batch[1])

    def on_validation_start(self, trainer, module):
        self._stop_clock()

    def _stop_clock(self):
        if self._epoch_start is not None:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_train_epoch_end(self, trainer, module):
        self._stop_clock()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.history.append({
            "epoch": trainer.current_epoch,
            "train_loss": metrics.get("train_loss_epoch"),
            "train_acc": metrics.get("train_acc"),
            "val_loss": metrics.get("val_loss"),
            "val_acc": metrics.get("val_acc"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "gates": gate_values(module.model),
        })
        self.write("running")

    @property
    def images_per_s(self) -> float | None:
        return self.train_images / self.train_seconds if self.train_seconds else None

    def duration(self) -> float:
        return self.elapsed + time.perf_counter() - self._session_start

    def write(self, status: str, **fields) -> dict:
        self.record.update(status=status, history=self.history, **fields)
        self.record.setdefault("metrics", {}).update(duration_s=round(self.duration(), 2),
                                                      train_images_per_s=self.images_per_s)
        write_json(self.path, self.record)
        return self.record

    def state_dict(self) -> dict:
        return {"history": self.history, "train_seconds": self.train_seconds, "train_images": self.train_images,
                "elapsed": self.duration()}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.train_seconds = state["history"], state["train_seconds"]
        self.train_images, self.elapsed = state["train_images"], state["elapsed"]
        self._session_start = time.perf_counter()

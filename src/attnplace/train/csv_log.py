"""metrics.csv across a resume: the rows of the sessions before it stay.

Lightning's CSV writer deletes the metrics.csv it finds when it starts (`_ExperimentWriter._check_log_dir_exists`,
with a warning, which quiet.py hides), so a resumed run's file would hold only the epochs since its last resume.
The record's history keeps every epoch, but metrics.csv is the per-step log a user plots. So before `trainer.fit`
the old file is renamed aside, and when training starts, at the epoch the checkpoint restored, its rows of the
epochs before that one are written back, ahead of what this session logs. Rows logged after the last checkpoint
(the epoch a kill interrupted) are dropped: this session logs that epoch again.
"""

import csv
import os
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger

from ..atomic import atomic_write

LOG = "metrics.csv"
ASIDE = "metrics.earlier.csv"  # the last session's log until it is written back; a kill in between keeps it


def csv_logger(run_dir: Path) -> CSVLogger:
    """Lightning's CSV logger on `run_dir/metrics.csv`, with any earlier session's file set aside first."""
    if (run_dir / LOG).exists():  # newer than any file already aside: it holds that one's rows too
        os.replace(run_dir / LOG, run_dir / ASIDE)
    return CSVLogger(save_dir=run_dir, name="", version="")


class EarlierRows(Callback):
    """Writes the set-aside rows of the epochs before the resumed one back into metrics.csv."""

    def __init__(self, logger: CSVLogger):
        self.logger = logger

    def on_train_start(self, trainer, module):
        aside = Path(self.logger.log_dir) / ASIDE
        if not aside.exists():
            return
        with aside.open(newline="") as file:
            reader = csv.DictReader(file)
            rows = [row for row in reader if row["epoch"] and int(row["epoch"]) < trainer.current_epoch]
            header = reader.fieldnames or []
        if rows:
            writer = self.logger.experiment
            atomic_write(writer.metrics_file_path, lambda tmp: _write_rows(tmp, header, rows))
            # The writer appends to a file whose header it knows, and rewrites it with the union of the keys when
            # a new one comes (the test's, say); without this it would rewrite the file with this session's keys.
            writer.metrics_keys = list(header)
        aside.unlink()


def _write_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)

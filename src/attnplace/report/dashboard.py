"""The ablation on the W&B dashboard: one `summary` run beside a grid's training runs.

A grid's training runs each log their curves; what the user came for is the comparison. This logs the
report into the same W&B project and group as those runs, as one run with job_type `summary`:
the summary table (the columns of summary.csv, one row per variant), every pair (pairs.csv), the
omnibus tests per group, the factorial ANOVA (when asked for), the per-run table, the mean gate and mask
trajectories, and the plots accuracy.png, pairs.png (as `pairs_matrix`), factorial.png (as
`factorial_interaction`), gates.png and masks.png (those written). Offline unless the user has logged in
to W&B, like the training runs; `wandb sync <results_dir>/wandb/offline-run-*` uploads it later.
"""

import dataclasses
import re
from pathlib import Path

import pandas as pd

from .build import Report

RUN_COLUMNS = ["variant", "seed", "status", "test_acc", "val_acc", "params", "flops", "train_images_per_s", "id"]
PLOTS = {"accuracy": "accuracy", "pairs": "pairs_matrix", "factorial": "factorial_interaction", "gates": "gates",
         "masks": "masks"}  # file -> W&B key


def _wandb_settings(report: Report) -> tuple[str, str, str]:
    """(project, group, mode) of the grid's runs, read from their recorded configs."""
    from ..train.fit import wandb_mode

    config = report.records[0]["config"]  # one experiment: mixing.py refused anything else
    wandb = config.get("wandb") or {}
    return wandb.get("project", "attnplace"), config.get("name", "default"), wandb_mode(wandb.get("mode", "auto"))


def _table(frame: pd.DataFrame):
    """A wandb.Table; NaN stays a missing cell and non-numeric objects become strings W&B can type."""
    import wandb

    frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).replace("None", "")
    return wandb.Table(dataframe=frame.reset_index(drop=True))


def log_summary_run(report: Report, results_dir: str | Path) -> str:
    """Log `report` as the grid's `summary` run; return the run's local directory."""
    import wandb

    results_dir = Path(results_dir)
    project, group, mode = _wandb_settings(report)
    run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{group}-summary")[:128]
    run = wandb.init(project=project, group=group, job_type="summary", name=f"{group} summary", id=run_id,
                     dir=str(results_dir), mode=mode, resume="allow", reinit="finish_previous",
                     config={"results_dir": str(results_dir), "variants": int(len(report.summary)),
                             "runs": int(len(report.runs)), **dataclasses.asdict(report.settings)})
    media = {key: wandb.Image(str(results_dir / f"{name}.png"))
             for name, key in PLOTS.items() if (results_dir / f"{name}.png").exists()}
    tables = {"summary": report.summary, "pairs": report.pairs, "omnibus": report.omnibus,
              "runs": report.runs[RUN_COLUMNS], "gates_mean": report.gates_mean}
    if len(report.factorial):
        tables["factorial"] = report.factorial
    if len(report.masks_mean):
        tables["masks_mean"] = report.masks_mean
    run.log({**{name: _table(frame) for name, frame in tables.items()}, **media})
    run.summary["caveats"] = " ".join(report.caveats + report.notes)
    directory = run.dir
    run.finish()
    wandb.teardown()  # waits for W&B's service to write the run out: a command may exit right after this
    return directory

"""Validation accuracy over training: per variant and epoch, the mean over seeds and the paired Δ against the
group's baseline with its 95% CI. Does a gap open early and close, stay, or grow? (curves.csv, curves.png)

Pure pandas on the records' histories. The seeds are the tables' (the counted seed blocks), the pairing is
the summary's (`stats.compare` at each epoch, on `val_acc` after that epoch), and `epoch` counts the epochs
trained (1: after the first). Validation explores: each epoch's CI is pointwise, with no correction over
epochs; the test split at the final epoch confirms (the summary).
"""

import dataclasses

import pandas as pd

from ..run.report_settings import ReportSettings
from . import stats
from .summary import groups

CURVE_COLUMNS = ["group", "variant", "baseline", "epoch", "n", "acc_mean", "acc_std", "diff", "diff_ci_low",
                 "diff_ci_high", "n_pairs"]


def validation_curves(records: list[dict], runs: pd.DataFrame,
                      settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant and epoch trained: `CURVE_COLUMNS`, accuracies as fractions. `records` and `runs` are
    aligned (`records.load`); a variant without a completed run has no rows. Empty when no run recorded a
    validation accuracy."""
    by_epoch = _val_acc_by_epoch(records, runs)
    if by_epoch.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    on_val = dataclasses.replace(settings, metric="val_acc")
    rows = []
    for epoch, values in by_epoch.items():
        for group in groups(runs.assign(val_acc=values.to_numpy()), on_val):
            rows += [{"group": group.name, "variant": variant, "baseline": variant == group.baseline, "epoch": epoch,
                      **_point(acc, group.acc.loc[group.baseline] if group.baseline else None)}
                     for variant, acc in group.acc.iterrows() if acc.notna().any()]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype({"epoch": int, "n": int, "n_pairs": int})


def _point(acc: pd.Series, baseline: pd.Series | None) -> dict:
    """One variant at one epoch: n, mean and std over seeds, and Δ against the baseline with its CI."""
    described = stats.describe(acc.dropna())
    comparison = stats.compare(acc, baseline) if baseline is not None else stats.Comparison()
    low, high = comparison.ci
    return {"n": described["n"], "acc_mean": described["acc_mean"], "acc_std": described["acc_std"],
            "diff": comparison.diff, "diff_ci_low": low, "diff_ci_high": high, "n_pairs": comparison.n_pairs}


def _val_acc_by_epoch(records: list[dict], runs: pd.DataFrame) -> pd.DataFrame:
    """run (the runs frame's rows) × epochs trained → val_acc after that epoch; NaN where a run has none."""
    rows = [{entry["epoch"] + 1: entry.get("val_acc") for entry in rec.get("history") or []} for rec in records]
    frame = pd.DataFrame(rows, index=runs.index, dtype=float)
    return frame.dropna(axis=1, how="all").sort_index(axis=1)


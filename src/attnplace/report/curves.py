"""Validation accuracy over training: per variant and epoch, the mean over seeds and the paired Δ against the
group's baseline with its 95% CI; and the same per quarter of training, on each run's mean over the quarter's
epochs. Does a gap open early and close, stay, or grow? (curves.csv, curves.png, curve_quarters.csv)

Pure pandas on the records' histories. The seeds are the tables' (the counted seed blocks), the pairing is
the summary's (`stats.compare` at each epoch, on `val_acc` after that epoch), and `epoch` counts the epochs
trained (1: after the first). Validation explores: each epoch's CI is pointwise, with no correction over
epochs; the test split at the final epoch confirms (the summary).
"""

import dataclasses

import numpy as np
import pandas as pd

from ..run.report_settings import ReportSettings
from . import stats
from .summary import groups

POINT_COLUMNS = ["n", "acc_mean", "acc_std", "diff", "diff_ci_low", "diff_ci_high", "n_pairs"]
CURVE_COLUMNS = ["group", "variant", "baseline", "epoch", *POINT_COLUMNS]
QUARTER_COLUMNS = ["group", "variant", "baseline", "quarter", "first_epoch", "last_epoch", *POINT_COLUMNS]


def validation_curves(records: list[dict], runs: pd.DataFrame,
                      settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant and epoch trained: `CURVE_COLUMNS`, accuracies as fractions. `records` and `runs` are
    aligned (`records.load`); a variant without a completed run has no rows. Empty when no run recorded a
    validation accuracy."""
    by_epoch = _val_acc_by_epoch(records, runs)
    rows = _paired(by_epoch, runs, settings, "epoch")
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype({"epoch": int, "n": int, "n_pairs": int})


def quarter_gaps(records: list[dict], runs: pd.DataFrame,
                 settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant and quarter of training: `QUARTER_COLUMNS`. Each run's validation accuracy is first
    averaged over the epochs of each quarter of its own training (40 epochs: 1–10, 11–20, 21–30, 31–40; fewer
    than 4 epochs: one each), then compared over seeds as at each epoch. Averaging within the run keeps the
    seed the unit of the CI and damps the epoch-to-epoch swing of a high learning rate, so that a quarter, not
    one epoch, says whether a gap closes as the learning rate anneals. `first_epoch` and `last_epoch` span the
    quarter over the variant's runs."""
    by_epoch = _val_acc_by_epoch(records, runs)
    chunks = [_quarters(row.dropna().index.to_numpy()) for _, row in by_epoch.iterrows()]
    means = pd.DataFrame([{q: row[chunk].mean() for q, chunk in enumerate(run_chunks, 1)}
                          for (_, row), run_chunks in zip(by_epoch.iterrows(), chunks)],
                         index=by_epoch.index, dtype=float)
    table = pd.DataFrame(_paired(means.sort_index(axis=1), runs, settings, "quarter"),
                         columns=[c for c in QUARTER_COLUMNS if not c.endswith("_epoch")])
    return table.merge(_spans(runs, chunks), on=["variant", "quarter"], how="left")[QUARTER_COLUMNS].astype(
        {"quarter": int, "first_epoch": int, "last_epoch": int, "n": int, "n_pairs": int})


def _quarters(epochs: np.ndarray) -> list[np.ndarray]:
    """A run's epochs in 4 consecutive chunks as equal as can be (one epoch each below 4; none without any)."""
    return np.array_split(epochs, min(4, len(epochs))) if len(epochs) else []


def _spans(runs: pd.DataFrame, chunks: list[list[np.ndarray]]) -> pd.DataFrame:
    """variant, quarter → the first and last epoch of that quarter over the variant's completed runs (as in the
    tables: a run stopped mid-way has other quarters)."""
    spans = pd.DataFrame([{"variant": variant, "quarter": q, "first_epoch": chunk[0], "last_epoch": chunk[-1]}
                          for variant, status, run_chunks in zip(runs["variant"], runs["status"], chunks)
                          if status == "completed" for q, chunk in enumerate(run_chunks, 1)],
                         columns=["variant", "quarter", "first_epoch", "last_epoch"])
    return spans.groupby(["variant", "quarter"], as_index=False).agg(first_epoch=("first_epoch", "min"),
                                                                      last_epoch=("last_epoch", "max"))


def _paired(values: pd.DataFrame, runs: pd.DataFrame, settings: ReportSettings, key: str) -> list[dict]:
    """For each column of `values` (runs × epochs or quarters → val acc), one row per variant with a value:
    `key` (the column), then n, mean, std and Δ against its group's baseline (`_point`), paired as the summary."""
    on_val = dataclasses.replace(settings, metric="val_acc")
    rows = []
    for column, vals in values.items():
        for group in groups(runs.assign(val_acc=vals.to_numpy()), on_val):
            rows += [{"group": group.name, "variant": variant, "baseline": variant == group.baseline, key: column,
                      **_point(acc, group.acc.loc[group.baseline] if group.baseline else None)}
                     for variant, acc in group.acc.iterrows() if acc.notna().any()]
    return rows


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


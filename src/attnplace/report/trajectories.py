"""Gate and attention-mask values per epoch, from each record's history: long form and mean per variant.

Apart from the summary (`summary.py`), which reads one number per run: these read every epoch's
`gates` and `masks` of the completed runs, for gates.csv, masks.csv and their plots.
"""

import os
from collections.abc import Iterable

import pandas as pd

from .records import load
from .runs import runs_frame
from .validate import BadRecord, check_record

GATE_COLUMNS = ["run", "variant", "seed", "epoch", "gate", "stage", "block", "kind", "value"]
MASK_COLUMNS = ["run", "variant", "seed", "epoch", "stage", "block", "module", "stat", "value"]


def _split_gate(name: str) -> dict:
    """`stage2.block0.gamma_s` -> stage2, block0, kind gamma_s; odd names keep what they have."""
    parts = name.split(".")
    if len(parts) < 3:
        return {"stage": "", "block": "", "kind": parts[-1]}
    return {"stage": parts[0], "block": ".".join(parts[1:-1]), "kind": parts[-1]}


def _split_mask(name: str) -> dict:
    """`stage2.block0.attn_r.channel_mean` -> stage2, block0, module attn_r, stat channel_mean."""
    parts = name.split(".")
    if len(parts) < 4:
        return {"stage": "", "block": "", "module": "", "stat": parts[-1]}
    return {"stage": parts[0], "block": ".".join(parts[1:-2]), "module": parts[-2], "stat": parts[-1]}


def _trajectory(rec: dict, entry_key: str) -> Iterable[tuple[int, dict]]:
    """(epochs trained, values): the initial values at 0 when recorded, then the value after each epoch."""
    if rec.get(f"initial_{entry_key}"):
        yield 0, rec[f"initial_{entry_key}"]
    for entry in rec.get("history") or []:
        yield entry["epoch"] + 1, entry.get(entry_key) or {}


def _trajectories(records: list[dict], runs: pd.DataFrame, entry_key: str, split, columns: list[str],
                  by: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long form, mean per `by` + epoch) of one kind of per-epoch values in the history.

    Only completed runs: a diverged or unfinished run would bias the per-epoch mean. Blocks of one stage
    are averaged within a run first, so std and n describe the spread over seeds.
    """
    rows = [{"run": run.id, "variant": run.variant, "seed": run.seed, "epoch": epoch, "gate": name, **split(name),
             "value": value}
            for rec, run in zip(records, runs.itertuples()) if run.status == "completed"
            for epoch, values in _trajectory(rec, entry_key) for name, value in values.items() if value is not None]
    long = pd.DataFrame(rows, columns=columns).astype({"epoch": int, "value": float})
    per_run = long.groupby([*by, "epoch", "run"], as_index=False)["value"].mean()
    mean = per_run.groupby([*by, "epoch"], as_index=False)["value"].agg(mean="mean", std="std", n="count")
    return long, mean


def gate_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _trajectories(records, runs, "gates", _split_gate, GATE_COLUMNS, ["variant", "stage", "kind"])


def mask_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _trajectories(records, runs, "masks", _split_mask, MASK_COLUMNS, ["variant", "stage", "module", "stat"])


def _records(source: str | os.PathLike | Iterable[dict]) -> tuple[list[dict], pd.DataFrame]:
    """A results directory, or record dicts (invalid ones skipped), as (records, runs frame)."""
    if isinstance(source, str | os.PathLike):
        loaded = load(source)
        return loaded.records, loaded.runs
    records = []
    for rec in source:
        try:
            records.append(check_record(rec))
        except BadRecord:
            continue
    return records, runs_frame(records, {})


def gate_trajectories(source: str | os.PathLike | Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gate values per epoch: (long form, per-variant/stage/kind mean per epoch).

    `source` is a results directory or an iterable of record dicts (invalid ones are skipped).
    `epoch` counts the epochs trained: 0 is the initial value, e the value after the e-th epoch.
    Long columns: run, variant, seed, epoch, gate, stage, block, kind, value.
    Mean columns: variant, stage, kind, epoch, mean, std, n (n = runs, std over seeds).
    """
    return gate_frames(*_records(source))


def mask_trajectories(source: str | os.PathLike | Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attention-mask statistics per epoch, from each history entry's `masks` (records before them have none).

    `epoch` counts the epochs trained (e: after the e-th). Long columns: run, variant, seed, epoch, stage,
    block, module (attn, attn_s, attn_r), stat (channel_/spatial_ mean, std, low, high; gain), value.
    Mean columns: variant, stage, module, stat, epoch, mean, std, n (blocks averaged within a run, then
    mean and std over seeds).
    """
    return mask_frames(*_records(source))

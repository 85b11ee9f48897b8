"""Whether the runs of a results directory are one experiment; a one-line `UserError` when they are not.

Apart from `records.py` (which runs) and `runs.py` (their frame): these checks only refuse, they change
nothing. The runs of a variant may differ only in their seed, with no seed twice, and runs of different
variants only in their axes and placement options. Nor may they mix environments that compute different
numbers: device type (`cpu`, `cuda`), precision or torch.compile, nor hardware (the GPU or CPU model)
within a seed block, unless the caller allows it (runs without an environment, which failed before
training, do not count). Blocks may differ in hardware: each pairs its variants on one kind. The error
names the differing keys. Runs that read different data (their content fingerprints differ) are refused
always: no flag pools two datasets.
"""

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..run.config import PRESENTATION_KEYS, Config
from .runs import BASELINE, ENVIRONMENT, PATTERN, PLACEMENT, axis_columns


# Environment keys a grid may vary on purpose, and the axis that varies each.
ENVIRONMENT_AXES = {"precision": "trainer.precision", "compile": "trainer.compile"}


def environment_differences(runs: pd.DataFrame) -> str:
    """`precision (32-true: 4 runs, bf16-mixed: 2 runs)` for each environment key the trained runs differ in;
    empty when they agree. A run that does not say (no environment; no CPU model in older records) is not
    counted for that key. A key the grid varies as an axis (`trainer.precision: [32-true, bf16-mixed]`) need
    only agree within each variant: a non-placement axis splits the groups, so every comparison stays within
    one of its values. Hardware need only agree within each seed block, the runs a table pairs: `hardware
    within seed block 1 (...)`."""
    axes, parts = set(axis_columns(runs)), []
    for key in ENVIRONMENT:
        if key == "hardware":
            parts += _mixed_blocks(runs)
            continue
        scopes = [runs] if ENVIRONMENT_AXES.get(key) not in axes else [v for _, v in runs.groupby("variant")]
        if any(scope[key].dropna().astype(str).nunique() > 1 for scope in scopes):
            parts.append(f"{key} ({_counts(runs[key].dropna().astype(str))})")
    return ", ".join(parts)


def _mixed_blocks(runs: pd.DataFrame) -> list[str]:
    """`hardware within seed block 1 (A: 1 run(s), B: 1 run(s))` for the first block whose runs trained on two
    hardware kinds, and how many more did."""
    mixed = [(seed, kinds) for seed, block in runs.groupby("seed")
             if (kinds := block["hardware"].dropna().astype(str)).nunique() > 1]
    if not mixed:
        return []
    (seed, kinds), more = mixed[0], f" and {len(mixed) - 1} more block(s)" if len(mixed) > 1 else ""
    return [f"hardware within seed block {seed} ({_counts(kinds)}){more}"]


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{value}: {n} run(s)" for value, n in values.value_counts(sort=False).items())


def check_same_data(records: list[dict], runs: pd.DataFrame, results_dir: Path) -> None:
    """Refuse (UserError) runs whose data fingerprints (a content hash of the decoded dataset) differ: the same
    path can hold other data on another machine, or after the files changed. Runs without a fingerprint (older
    records) are taken to have read what the others read, since their data config is the same. A grid that
    varies a `data.` key as an axis need only agree within each of its values."""
    data_axes = [a for a in axis_columns(runs) if a.startswith("data.")]
    for _, scope in runs.groupby(data_axes, dropna=False) if data_axes else [("", runs)]:
        counts = scope["data_fingerprint"].dropna().value_counts()
        if len(counts) > 1:
            (first, n), (second, m) = list(counts.items())[:2]
            raise UserError(f"{results_dir}: runs read different data at {_data_source(records[scope.index[0]])}: "
                            f"data fingerprint {_short(first)} ({_runs(n)}) vs {_short(second)} ({_runs(m)}); a table "
                            f"never pools two datasets")


def fingerprint_notes(records: list[dict], runs: pd.DataFrame) -> list[str]:
    """One note when some trained runs carry a data fingerprint and others, older, do not."""
    trained = runs["device"].notna()  # a run that failed before training read no data
    older = trained & runs["data_fingerprint"].isna()
    if not (older.any() and runs["data_fingerprint"].notna().any()):
        return []
    verb = "predates" if older.sum() == 1 else "predate"
    return [f"{_runs(int(older.sum()))} {verb} data fingerprints: taken to have read the same data as the others at "
            f"{_data_source(records[older.idxmax()])}"]


def _data_source(record: dict) -> str:
    """Where a run's data came from: its `data.path`, or the dataset's name where it has none (synthetic)."""
    flat = _flat_config(record)
    return str(json.loads(flat["data.path"]) or json.loads(flat["data.name"]))


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _short(fingerprint: str) -> str:
    return fingerprint[:12] + ("…" if len(fingerprint) > 12 else "")


@functools.cache
def _defaults() -> dict:
    return _flat(Config().to_dict())


def _flat_config(record: dict) -> dict:
    """A record's config as dotted keys, keys it lacks at today's defaults: a key added to the schema after
    the run did not exist then, and the code then computed what its default computes now (a new key's default
    keeps the old behaviour, and the old run ids: `config.LATER_KEYS`). So records written before and after a
    key was added still read as one experiment."""
    return {**_defaults(), **_flat(record["config"])}


def _flat(config: Mapping, prefix: str = "") -> dict:
    """Dotted key -> value for a nested config, leaving out the keys that only say where a run is shown."""
    flat = {}
    for key, value in config.items():
        dotted = prefix + key
        if dotted in PRESENTATION_KEYS:
            continue
        if isinstance(value, Mapping):
            flat.update(_flat(value, dotted + "."))
        else:
            flat[dotted] = json.dumps(value, sort_keys=True)
    return flat


def _differences(configs: list[dict], keys_of_interest) -> dict[str, list]:
    """Key -> the distinct values it takes across `configs`, for keys that are not the same everywhere."""
    keys = sorted({k for c in configs for k in c if keys_of_interest(k)})
    values = {k: list(dict.fromkeys(c.get(k, "absent") for c in configs)) for k in keys}
    return {k: v for k, v in values.items() if len(v) > 1}


def _describe(differences: dict[str, list]) -> str:
    key, values = next(iter(differences.items()))
    others = list(differences)[1:]
    more = f" and {len(others)} more key(s): {', '.join(others[:3])}" if others else ""
    return f"{key} ({' vs '.join(values[:3])}){more}"


def check_one_experiment(records: list[dict], runs: pd.DataFrame, results_dir: Path) -> None:
    """Refuse (UserError) a results dir whose runs are not one experiment: see the module docstring."""
    configs = [_flat_config(rec) for rec in records]
    axes = set(axis_columns(runs))
    hint = "a table compares one configuration: keep each experiment in its own results folder"
    members: dict[str, list[int]] = {}
    for i, variant in enumerate(runs["variant"]):
        members.setdefault(variant, []).append(i)
    for variant, rows in members.items():
        # A baseline's placement options are meaningless (it has no attention): `none/se` and `none/cbam` pool.
        baseline = runs[PATTERN].iloc[rows[0]] == BASELINE
        differ = _differences([configs[i] for i in rows],
                              lambda k: k != "seed" and not (baseline and k in PLACEMENT and k != PATTERN))
        if differ:
            raise UserError(f"{results_dir}: variant {variant} mixes runs whose configs differ in "
                            f"{_describe(differ)}; {hint}")
        seeds = [runs["seed"].iloc[i] for i in rows]
        twice = next((s for s in seeds if seeds.count(s) > 1), None)
        if twice is not None:
            ids = [runs["id"].iloc[i] for i in rows if runs["seed"].iloc[i] == twice]
            raise UserError(f"{results_dir}: variant {variant} has seed {twice} more than once "
                            f"({', '.join(ids[:2])}); repeated seeds are not independent runs")
    differ = _differences(configs, lambda k: k != "seed" and k not in axes and k not in PLACEMENT)
    if differ:
        raise UserError(f"{results_dir}: runs differ in {_describe(differ)}, which is not an axis of the "
                        f"grid; {hint}")

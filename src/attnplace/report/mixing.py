"""Whether the runs of a results directory are one experiment; a one-line `UserError` when they are not.

Apart from `records.py` (which runs) and `runs.py` (their frame): these checks only refuse, they change
nothing. The runs of a variant may differ only in their seed, with no seed twice, and runs of different
variants only in their axes and placement options. Nor may they mix environments that compute different
numbers: device type (`cpu`, `cuda`), hardware (the GPU or CPU model), precision or torch.compile, unless
the caller allows it (runs without an environment, which failed before training, do not count). The error
names the differing keys.
"""

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..train.config import PRESENTATION_KEYS, Config
from .runs import BASELINE, ENVIRONMENT, PATTERN, PLACEMENT, axis_columns


# Environment keys a grid may vary on purpose, and the axis that varies each.
ENVIRONMENT_AXES = {"precision": "trainer.precision", "compile": "trainer.compile"}


def environment_differences(runs: pd.DataFrame) -> str:
    """`precision (32-true: 4 runs, bf16-mixed: 2 runs)` for each environment key the trained runs differ in;
    empty when they agree. A run that does not say (no environment; no CPU model in older records) is not
    counted for that key. A key the grid varies as an axis (`trainer.precision: [32-true, bf16-mixed]`) need
    only agree within each variant: a non-placement axis splits the groups, so every comparison stays within
    one of its values."""
    axes, parts = set(axis_columns(runs)), []
    for key in ENVIRONMENT:
        scopes = [runs] if ENVIRONMENT_AXES.get(key) not in axes else [v for _, v in runs.groupby("variant")]
        if any(scope[key].dropna().astype(str).nunique() > 1 for scope in scopes):
            counts = runs[key].dropna().astype(str).value_counts(sort=False)
            parts.append(f"{key} ({', '.join(f'{value}: {n} run(s)' for value, n in counts.items())})")
    return ", ".join(parts)


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

"""Read a results directory into one row per run, refusing anything that would mix experiments.

A results directory holds `runs/<run_id>/record.json` (one per training run) and, when a grid wrote
it, `grid.json` with the grid's axes and run ids. Which runs belong to the table:
- with `grid.json`: exactly the runs it lists (a rerun grid with a changed base lists new ids, so the
  old runs left in `runs/` are not averaged in);
- without: every run in `runs/`.
Either way the runs must form one experiment: the runs of a variant may differ only in their seed, with
no seed twice, and runs of different variants only in their axes and placement options. Nor may they mix
environments that compute different numbers: device type (`cpu`, `cuda`), precision or torch.compile,
unless the caller allows it (runs without an environment, which failed before training, do not count).
Anything else is refused with a one-line `UserError` naming the differing keys. A record that cannot be
trusted (corrupt, wrong types: `validate.py`) is reported by path and skipped, so one broken run never
hides the rest.

Vocabulary:
- axis: a dotted config key the grid varies (`model.pattern`, `optim.lr`) or `seed`.
- variant: the values of every axis except `seed`; its seeds are its repeated runs.
- placement axis: one of `config.PLACEMENT_AXES`, a choice of *where/how* attention sits, or how its
  gates train (`optim.gate_lr_scale`); not the backbone or the norm.
- group: the variants that agree on every non-placement axis; they are compared with each other, and
  with their baseline (by default the `model.pattern == "none"` variant: `resnet20/p1/se` is compared
  with `resnet20/none`).
- order: variants are listed group by group, each axis in the order of the values the grid lists.
"""

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..train.config import PLACEMENT_AXES, PRESENTATION_KEYS
from .validate import METRICS, BadRecord, read_checked

BASELINE = "none"
PATTERN = "model.pattern"
# The pattern is the placement itself, whatever else the config counts as one.
PLACEMENT = PLACEMENT_AXES | {PATTERN}
DEFAULT_AXES = ("model.backbone", PATTERN, "model.attention", "seed")
ENVIRONMENT = ("device", "precision", "compile")  # what changes the numbers a run computes


# ---------------------------------------------------------------- which runs: grid.json


@dataclass
class GridSpec:
    """What the optional grid.json says: the axes with their values in the grid's order, the run ids it lists
    (None: read every run in runs/), and its `report:` section."""

    axes: dict[str, list] = field(default_factory=dict)
    runs: list[str] | None = None
    report: dict = field(default_factory=dict)


def _grid_spec(results_dir: Path, problems: list[str]) -> GridSpec:
    path = results_dir / "grid.json"
    if not path.exists():
        return GridSpec()
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: unreadable: {exc}")
        return GridSpec()
    grid = grid if isinstance(grid, dict) else {}
    axes, runs = grid.get("axes"), grid.get("runs")
    if not (isinstance(axes, dict) and all(isinstance(v, list) for v in axes.values())):
        problems.append(f"{path}: 'axes' must map dotted config keys to value lists; using the records' axes")
        axes = {}
    if runs is not None and not (isinstance(runs, list) and all(isinstance(r, str) for r in runs)):
        problems.append(f"{path}: 'runs' must be a list of run ids; reading every run in runs/")
        runs = None
    return GridSpec(axes, runs, grid.get("report") or {})


def _run_dirs(results_dir: Path, listed: list[str] | None, notes: list[str]) -> list[Path]:
    present = sorted(p for p in (results_dir / "runs").glob("*") if p.is_dir())
    if listed is None:
        return present
    left_out = [p for p in present if p.name not in set(listed)]
    if left_out:
        notes.append(f"{len(left_out)} run folder(s) in runs/ are not in grid.json (an earlier configuration "
                     f"of the grid) and are left out, e.g. {left_out[0].name}")
    return [results_dir / "runs" / run_id for run_id in listed]


@dataclass
class Loaded:
    """A results dir read once: the checked records, their runs table, and what was skipped or left out."""

    records: list[dict]
    runs: pd.DataFrame
    problems: list[str] = field(default_factory=list)  # records that could not be used
    notes: list[str] = field(default_factory=list)  # runs deliberately left out
    grid: GridSpec = field(default_factory=GridSpec)


def load(results_dir: str | os.PathLike, allow_mixed_environments: bool = False) -> Loaded:
    """Read the runs of a results dir once; shared by every public entry point.

    Raises UserError when the dir is missing, holds no usable record, or mixes experiments (or, unless
    allowed, environments).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory {results_dir} does not exist")
    problems, notes = [], []
    grid = _grid_spec(results_dir, problems)
    records, seen, pending = [], set(), []
    for run_dir in _run_dirs(results_dir, grid.runs, notes):
        path = run_dir / "record.json"
        try:
            rec = read_checked(path) if path.exists() else None
        except BadRecord as exc:
            problems.append(f"{path}: {exc}")
            continue
        if rec is None:
            pending.append(run_dir.name)
        elif rec["id"] in seen:
            problems.append(f"{path}: duplicate run id {rec['id']!r}; kept the first")
        else:
            seen.add(rec["id"])
            records.append(rec)
    if not records:
        raise UserError(f"no readable runs/*/record.json in results directory {results_dir}"
                        + (f" ({len(problems)} skipped: {problems[0]})" if problems else ""))
    running = [r["id"] for r in records if r["status"] == "running"]
    if pending or running:  # a grid stopped part-way: the same grid command finishes it
        notes.append(f"unfinished: {len(pending)} run(s) not started, {len(running)} stopped mid-training "
                     f"(not counted); rerun the grid command to finish them")
    runs = runs_frame(records, grid.axes)
    check_one_experiment(records, runs, results_dir)
    if (mixed := environment_differences(runs)) and not allow_mixed_environments:
        raise UserError(f"{results_dir}: runs differ in {mixed}; a table never mixes device types, precisions or "
                        f"compile settings: keep each in its own results folder, or pass "
                        f"--allow-mixed-environments to compare them anyway")
    return Loaded(records, runs, problems, notes, grid)


def load_records(results_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """One row per run of the experiment, and a `path: reason` line per record that was skipped.

    Columns: id, status, error, failed_epoch, one column per axis named by its dotted key, seed,
    the metrics (accuracies as fractions), final_epoch (the last epoch trained, counted from 0), test_on,
    code, the environment (device type, precision, compile; None without one), a readable `variant`
    label and its `order`. Axis columns are exactly the dotted-key columns: that is how `summarize`
    tells axes from metrics.
    """
    loaded = load(results_dir)
    return loaded.runs, loaded.problems


# ---------------------------------------------------------------- one row per run


def _axis_keys(records: list[dict], grid_axes: Mapping[str, list]) -> list[str]:
    """Ordered union of declared axes; falls back to the defaults for single runs.

    `model.pattern` is always an axis because baselines are found by it.
    """
    keys = dict.fromkeys(grid_axes)
    for rec in records:
        keys.update(dict.fromkeys(rec.get("axes") or {}))
    keys = dict.fromkeys(keys or DEFAULT_AXES)
    keys.setdefault(PATTERN)
    keys.pop("seed", None)  # seed is its own column, always present
    return list(keys)


def lookup(config: Mapping, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _axis_value(rec: dict, key: str):
    """The run's value on an axis: its recorded axes first, else its config."""
    axes = rec.get("axes") or {}
    value = axes[key] if key in axes else lookup(rec["config"], key)
    # Lists (e.g. model.stages) must become hashable to group by them.
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def runs_frame(records: list[dict], grid_axes: Mapping[str, list]) -> pd.DataFrame:
    axes = _axis_keys(records, grid_axes)
    has_acc5 = any((r.get("metrics") or {}).get("test_acc5") is not None for r in records)
    metrics = [m for m in METRICS if m != "test_acc5" or has_acc5]  # top-5 only where recorded (CIFAR-100)
    rows = []
    for rec in records:
        row = {key: rec.get(key) for key in ("id", "status", "error", "failed_epoch")}
        row.update({key: _axis_value(rec, key) for key in axes})
        row["seed"] = _axis_value(rec, "seed")
        row.update({m: (rec.get("metrics") or {}).get(m) for m in metrics})
        row["final_epoch"] = max((h["epoch"] for h in rec.get("history") or []), default=None)
        row["test_on"] = lookup(rec["config"], "trainer.test_on") or "final"
        row["code"] = _code(rec)
        row.update(_environment(rec))
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["id", "status", "error", "failed_epoch", *axes, "seed", *metrics, "final_epoch",
                                       "test_on", "code", *ENVIRONMENT])
    runs[metrics] = runs[metrics].astype(float)
    runs[["failed_epoch", "final_epoch"]] = runs[["failed_epoch", "final_epoch"]].astype("Int64")
    keys = variant_keys(runs)
    runs["variant"] = [label(k, axes) for k in keys]
    runs["order"] = _order(keys, axes, grid_axes)
    return runs


def _environment(rec: dict) -> dict:
    """The device type (`cpu` of "cpu: 2 cores"), precision and compile flag a run trained with; all None for
    a record without an environment (it failed before training). An older record without `compile` ran eager."""
    env = rec.get("environment") or {}
    if not env:
        return dict.fromkeys(ENVIRONMENT)
    return {"device": str(env.get("device") or "").split(":")[0].strip() or None,
            "precision": env.get("precision"), "compile": bool(env.get("compile"))}


def environment_differences(runs: pd.DataFrame) -> str:
    """`precision (32-true: 4 runs, bf16-mixed: 2 runs)` for each environment key the trained runs differ in;
    empty when they agree."""
    trained = runs.dropna(subset=list(ENVIRONMENT), how="all")
    parts = []
    for key in ENVIRONMENT:
        counts = trained[key].astype(str).value_counts(sort=False)
        if len(counts) > 1:
            parts.append(f"{key} ({', '.join(f'{value}: {n} run(s)' for value, n in counts.items())})")
    return ", ".join(parts)


def _code(rec: dict) -> str | None:
    """The source hashes of the code that trained a run, in session order ("a+b" when it was resumed under
    other code); None for records older than `code` in sessions."""
    hashes = [s["code"]["source_sha256"] for s in rec.get("sessions") or [] if s.get("code")]
    return "+".join(dict.fromkeys(hashes)) or None


# ---------------------------------------------------------------- variants


def axis_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if "." in c]


def variant_keys(runs: pd.DataFrame) -> list[tuple]:
    """Each run's variant as a tuple over the axis columns.

    A baseline has no attention, so its other placement axes (attention type, gate init, ...)
    are meaningless: blanking them pools e.g. `none/se` and `none/cbam` into one baseline.
    """
    axes = axis_columns(runs)
    keys = []
    for values in runs[axes].itertuples(index=False, name=None):
        values = tuple(None if isna(v) else v for v in values)
        if dict(zip(axes, values)).get(PATTERN) == BASELINE:
            values = tuple(None if a in PLACEMENT and a != PATTERN else v for a, v in zip(axes, values))
        keys.append(values)
    return keys


def isna(value) -> bool:
    """Missing in any of pandas' spellings (None, NaN, pd.NA), without choking on strings."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def label(key: tuple, axes: list[str]) -> str:
    """`resnet20/p4/se/lr=0.1`: backbone, pattern and attention speak for themselves; any other
    axis value carries its key's last part, since a bare `0.1` or `[2, 3]` says nothing. A whole float
    is written as the grid file writes it (`gate_lr_scale=10`, not `10.0`), so labels can be typed."""
    parts = [_text(v) if a in DEFAULT_AXES else f"{a.rsplit('.', 1)[-1]}={_text(v)}"
             for a, v in zip(axes, key) if v is not None]
    return "/".join(parts)


def _text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def placement_label(key: tuple, axes: list[str]) -> str:
    """The label of a variant's placement axes only: the same placement in every group (`p1/se`)."""
    return label(tuple(v for a, v in zip(axes, key) if a in PLACEMENT), [a for a in axes if a in PLACEMENT])


def _order(keys: list[tuple], axes: list[str], grid_axes: Mapping[str, list]) -> list[int]:
    """Each run's variant position: by the non-placement axes first (so a group's variants are adjacent),
    then the placement axes, each axis in the order the grid lists its values (numbers as numbers); a blank
    (a baseline's placement option) comes first, values the grid does not list last, in their natural order."""
    ranked = sorted(range(len(axes)), key=lambda i: axes[i] in PLACEMENT)  # stable: keeps the grid's axis order

    def position(axis: str, value) -> tuple:
        listed = [json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v for v in grid_axes.get(axis, [])]
        if value is None:
            return (-1, 0, "")
        if value in listed:
            return (listed.index(value), 0, "")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return (len(listed), 0 if number else 1, value if number else str(value))

    sort_keys = [tuple(position(axes[i], key[i]) for i in ranked) for key in keys]
    distinct = sorted(set(sort_keys))
    return [distinct.index(k) for k in sort_keys]


# ---------------------------------------------------------------- one experiment, or a refusal


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
    configs = [_flat(rec["config"]) for rec in records]
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

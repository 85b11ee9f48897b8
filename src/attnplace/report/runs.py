"""One row per run, and the variants those rows form: their keys, labels and report order.

Apart from `records.py` (which runs form the table) and `mixing.py` (whether they are one experiment):
this is the frame every report reads, a pure function of the records and the grid's axes.

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
from collections.abc import Mapping

import pandas as pd

from ..errors import UserError
from ..run.config import PLACEMENT_AXES
from ..run.environment import hardware_kind
from ..run.record import run_ended
from .validate import METRICS

BASELINE = "none"
PATTERN = "model.pattern"
# The pattern is the placement itself, whatever else the config counts as one.
PLACEMENT = PLACEMENT_AXES | {PATTERN}
DEFAULT_AXES = ("model.backbone", PATTERN, "model.attention", "seed")
ENVIRONMENT = ("device", "hardware", "precision", "compile")  # what changes the numbers a run computes


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
        row["ended"] = run_ended(rec)
        row["data_fingerprint"] = rec.get("data_fingerprint")
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["id", "status", "error", "failed_epoch", *axes, "seed", *metrics, "final_epoch",
                                       "test_on", "code", *ENVIRONMENT, "ended", "data_fingerprint"])
    runs[metrics] = runs[metrics].astype(float)
    runs[["failed_epoch", "final_epoch"]] = runs[["failed_epoch", "final_epoch"]].astype("Int64")
    keys = variant_keys(runs)
    runs["variant"] = [label(k, axes) for k in keys]
    runs["order"] = _order(keys, axes, grid_axes)
    return runs


def _environment(rec: dict) -> dict:
    """The device type (`cpu` of "cpu: 2 cores"), the hardware kind (`record.hardware_kind`: the kind its Ray node
    declared, else the GPU or CPU model, the kind its seed block is bound to), precision and compile flag a run
    trained with; all None for a record without an environment (it failed before training). An older record
    without `compile` ran eager; one without `cpu` does not say its CPU."""
    env = rec.get("environment") or {}
    if not env:
        return dict.fromkeys(ENVIRONMENT)
    return {"device": str(env.get("device") or "").split(":")[0].strip() or None, "hardware": hardware_kind(env),
            "precision": env.get("precision"), "compile": bool(env.get("compile"))}


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
    parts = [value_text(v) if a in DEFAULT_AXES else f"{a.rsplit('.', 1)[-1]}={value_text(v)}"
             for a, v in zip(axes, key) if v is not None]
    return "/".join(parts)


def labels_across(frame: pd.DataFrame, axis: str, key: str) -> list[str]:
    """Each row's variant label with `axis` left out: one variant across the values of a non-placement axis
    (`report.contrast`, `report.tune`). An axis the frame does not vary outside the placement is a UserError
    under `key`."""
    axes = axis_columns(frame)
    varied = [a for a in axes if a not in PLACEMENT and frame[a].nunique() > 1]
    if axis not in varied:
        why = ("a placement axis, whose variants each group compares already" if axis in PLACEMENT
               else "no axis this report varies outside the placement")
        raise UserError(f"{key}: {axis!r} is {why}; valid: {', '.join(varied) or 'none'}")
    rest = [a for a in axes if a != axis]
    return [label(tuple(v for a, v in zip(axes, k) if a != axis), rest) for k in variant_keys(frame)]


def value_text(value) -> str:
    """An axis value as a grid file writes it: a whole float without its `.0`."""
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

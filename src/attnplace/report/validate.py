"""Whether one record.json can be trusted: every field a report reads, with the right type and range.

A failure is a `BadRecord` whose message names the field; the report lists it as `path: reason` and
leaves the run out, so one broken run never hides the rest of a grid.
"""

import json
import math
from pathlib import Path

STATUSES = ("completed", "failed", "running")
ACCURACIES = ("test_acc", "val_acc", "best_val_acc", "test_acc5")
METRICS = (*ACCURACIES, "params", "flops", "train_images_per_s", "duration_s", "tested_epoch")


class BadRecord(ValueError):
    """Why one record.json cannot be used; becomes a `path: reason` problem line."""


# ---------------------------------------------------------------- validating one record


def check_record(rec: object) -> dict:
    """Return `rec` if every field the report uses has the right type, else raise BadRecord."""
    if not isinstance(rec, dict):
        raise BadRecord(f"not a JSON object but {type(rec).__name__}")
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        raise BadRecord("'id' missing or not a non-empty string")
    if rec.get("status") not in STATUSES:
        raise BadRecord(f"'status' is {rec.get('status')!r}; valid: {', '.join(STATUSES)}")
    _typed(rec, "config", dict, required=True)
    _typed(rec, "axes", dict)
    _typed(rec, "error", str)
    _typed(rec, "failed_epoch", int)
    _check_metrics(rec)
    _check_history(rec)
    return rec


def _typed(rec: dict, key: str, kind: type, required: bool = False):
    """Type-check and return `rec[key]`; null/absent is allowed unless `required`."""
    value = rec.get(key)
    if value is None and not required:
        return None
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        raise BadRecord(f"'{key}' missing" if value is None else
                         f"'{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


# bool is an int subclass, but `true` as an epoch or accuracy is a writer bug, not a number.
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_metrics(rec: dict) -> None:
    metrics = _typed(rec, "metrics", dict, required=rec["status"] == "completed") or {}
    for key in METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        if not _is_number(value):
            raise BadRecord(f"'metrics.{key}' must be a finite number, got {value!r}")
        if key in ACCURACIES and not 0 <= value <= 1:
            raise BadRecord(f"'metrics.{key}' is {value}; accuracies are fractions in [0, 1]")
    if rec["status"] == "completed" and metrics.get("test_acc") is None:
        raise BadRecord("completed run without 'metrics.test_acc'")


def _check_history(rec: dict) -> None:
    for i, entry in enumerate(_typed(rec, "history", list) or []):
        if not isinstance(entry, dict) or not _is_int(entry.get("epoch")):
            raise BadRecord(f"'history[{i}]' must be an object with an integer 'epoch'")
        _check_named_numbers(entry.get("gates"), f"history[{i}].gates", "gate")
        _check_named_numbers(entry.get("masks"), f"history[{i}].masks", "mask statistic")
    _check_named_numbers(rec.get("initial_gates"), "initial_gates", "gate")


def _check_named_numbers(values: object, where: str, what: str) -> None:
    if not isinstance(values or {}, dict) or not all(v is None or _is_number(v) for v in (values or {}).values()):
        raise BadRecord(f"'{where}' must map {what} names to numbers")


def read_checked(path: Path) -> dict:
    """Parse and check one record.json; any failure becomes BadRecord."""
    try:
        return check_record(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecord(f"unreadable: {exc}") from None

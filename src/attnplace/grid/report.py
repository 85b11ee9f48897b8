"""Aggregate a results directory into per-variant statistics, tables and plots.

A results directory holds `runs/<run_id>/record.json` (one per training run) and optionally
`grid.json`. Everything here reads those files defensively: a record that cannot be trusted
is reported by path and skipped, so one broken run never hides the rest of a grid.

Vocabulary:
- axis: a dotted config key the grid varies (`model.pattern`, `optim.lr`) or `seed`.
- variant: the values of every axis except `seed`; its seeds are its repeated runs.
- placement axis: a `model.*` axis other than the backbone and norm, i.e. a choice of *where/how*
  attention sits. A variant's baseline is the `model.pattern == "none"` variant that agrees on
  every non-placement axis (`resnet20/p1/se` is compared with `resnet20/none`).
"""

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..atomic import atomic_write
from ..errors import UserError
from .plots import plot_accuracy, plot_gates, png_bytes

STATUSES = ("completed", "failed", "running")
BASELINE = "none"
PATTERN = "model.pattern"
NON_PLACEMENT = {"model.backbone", "model.norm"}
DEFAULT_AXES = ("model.backbone", PATTERN, "model.attention", "seed")
ACCURACIES = ("test_acc", "val_acc", "best_val_acc", "test_acc5")
METRICS = (*ACCURACIES, "params", "flops", "train_images_per_s", "duration_s")
COSTS = ("params", "flops", "train_images_per_s")
GATE_COLUMNS = ["run", "variant", "seed", "epoch", "gate", "stage", "block", "kind", "value"]


class _BadRecord(ValueError):
    """Why one record.json cannot be used; becomes a `path: reason` problem line."""


# ---------------------------------------------------------------- reading and validating records


def _check_record(rec: object) -> dict:
    """Return `rec` if every field the report uses has the right type, else raise _BadRecord."""
    if not isinstance(rec, dict):
        raise _BadRecord(f"not a JSON object but {type(rec).__name__}")
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        raise _BadRecord("'id' missing or not a non-empty string")
    if rec.get("status") not in STATUSES:
        raise _BadRecord(f"'status' is {rec.get('status')!r}; valid: {', '.join(STATUSES)}")
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
        raise _BadRecord(f"'{key}' missing" if value is None else
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
            raise _BadRecord(f"'metrics.{key}' must be a finite number, got {value!r}")
        if key in ACCURACIES and not 0 <= value <= 1:
            raise _BadRecord(f"'metrics.{key}' is {value}; accuracies are fractions in [0, 1]")
    if rec["status"] == "completed" and metrics.get("test_acc") is None:
        raise _BadRecord("completed run without 'metrics.test_acc'")


def _check_history(rec: dict) -> None:
    for i, entry in enumerate(_typed(rec, "history", list) or []):
        if not isinstance(entry, dict) or not _is_int(entry.get("epoch")):
            raise _BadRecord(f"'history[{i}]' must be an object with an integer 'epoch'")
        gates = entry.get("gates") or {}
        if not isinstance(gates, dict) or not all(v is None or _is_number(v) for v in gates.values()):
            raise _BadRecord(f"'history[{i}].gates' must map gate names to numbers")


def _read_record(path: Path) -> dict:
    """Parse and check one record.json; any failure becomes _BadRecord."""
    try:
        return _check_record(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadRecord(f"unreadable: {exc}") from None


def _grid_axes(results_dir: Path, problems: list[str]) -> list[str]:
    """Axis keys from the optional grid.json, in the order the grid declared them."""
    path = results_dir / "grid.json"
    if not path.exists():
        return []
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: unreadable: {exc}")
        return []
    axes = grid.get("axes", {}) if isinstance(grid, dict) else None
    if isinstance(axes, dict):
        return list(axes)  # JSON object keys are always strings
    problems.append(f"{path}: 'axes' must map dotted config keys to value lists; using the records' axes")
    return []


@dataclass
class _Loaded:
    """A results dir read once: the checked records, their runs table, and what was skipped."""

    records: list[dict]
    runs: pd.DataFrame
    problems: list[str]


def _load(results_dir: str | os.PathLike) -> _Loaded:
    """Read every run of a results dir once; shared by the public entry points.

    Raises UserError when the dir is missing or holds no usable record, since no table can follow.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory {results_dir} does not exist")
    problems: list[str] = []
    grid_axes = _grid_axes(results_dir, problems)
    records, seen = [], set()
    for run_dir in sorted(p for p in (results_dir / "runs").glob("*") if p.is_dir()):
        path = run_dir / "record.json"
        try:
            rec = _read_record(path) if path.exists() else None
        except _BadRecord as exc:
            problems.append(f"{path}: {exc}")
            continue
        if rec is None:
            problems.append(f"{run_dir}: no record.json (run never started or died before writing one)")
        elif rec["id"] in seen:
            problems.append(f"{path}: duplicate run id {rec['id']!r}; kept the first")
        else:
            seen.add(rec["id"])
            records.append(rec)
    if not records:
        raise UserError(f"no readable runs/*/record.json in results directory {results_dir}"
                        + (f" ({len(problems)} skipped: {problems[0]})" if problems else ""))
    return _Loaded(records, _runs_frame(records, grid_axes), problems)


# ---------------------------------------------------------------- one row per run


def _axis_keys(records: list[dict], grid_axes: list[str]) -> list[str]:
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


def _lookup(config: Mapping, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _axis_value(rec: dict, key: str):
    """The run's value on an axis: its recorded axes first, else its config."""
    axes = rec.get("axes") or {}
    value = axes[key] if key in axes else _lookup(rec["config"], key)
    # Lists (e.g. model.stages) must become hashable to group by them.
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def _runs_frame(records: list[dict], grid_axes: list[str]) -> pd.DataFrame:
    axes = _axis_keys(records, grid_axes)
    has_acc5 = any((r.get("metrics") or {}).get("test_acc5") is not None for r in records)
    metrics = [m for m in METRICS if m != "test_acc5" or has_acc5]  # top-5 only where recorded (CIFAR-100)
    rows = []
    for rec in records:
        row = {key: rec.get(key) for key in ("id", "status", "error", "failed_epoch")}
        row.update({key: _axis_value(rec, key) for key in axes})
        row["seed"] = _axis_value(rec, "seed")
        row.update({m: (rec.get("metrics") or {}).get(m) for m in metrics})
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["id", "status", "error", "failed_epoch", *axes, "seed", *metrics])
    runs[metrics] = runs[metrics].astype(float)
    runs["failed_epoch"] = runs["failed_epoch"].astype("Int64")
    runs["variant"] = [_label(k, axes) for k in _variant_keys(runs)]
    return runs


def load_records(results_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable run, and a `path: reason` line per record that was skipped.

    Columns: id, status, error, failed_epoch, one column per axis named by its dotted key, seed,
    the metrics (accuracies as fractions), and a readable `variant` label. Axis columns are
    exactly the dotted-key columns: that is how `summarize` tells axes from metrics.
    """
    loaded = _load(results_dir)
    return loaded.runs, loaded.problems


# ---------------------------------------------------------------- variants and statistics


def _axes(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if "." in c]


def _is_placement(axis: str) -> bool:
    return axis.startswith("model.") and axis not in NON_PLACEMENT


def _variant_keys(runs: pd.DataFrame) -> list[tuple]:
    """Each run's variant as a tuple over the axis columns.

    A baseline has no attention, so its other placement axes (attention type, gate init, ...)
    are meaningless: blanking them pools e.g. `none/se` and `none/cbam` into one baseline.
    """
    axes = _axes(runs)
    keys = []
    for values in runs[axes].itertuples(index=False, name=None):
        values = tuple(None if _isna(v) else v for v in values)
        if dict(zip(axes, values)).get(PATTERN) == BASELINE:
            values = tuple(None if _is_placement(a) and a != PATTERN else v for a, v in zip(axes, values))
        keys.append(values)
    return keys


def _isna(value) -> bool:
    """Missing in any of pandas' spellings (None, NaN, pd.NA), without choking on strings."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _label(key: tuple, axes: list[str]) -> str:
    """`resnet20/p4/se/lr=0.1`: backbone, pattern and attention speak for themselves; any other
    axis value carries its key's last part, since a bare `0.1` or `[2, 3]` says nothing."""
    parts = [str(v) if a in DEFAULT_AXES else f"{a.rsplit('.', 1)[-1]}={v}"
             for a, v in zip(axes, key) if v is not None]
    return "/".join(parts)


def _acc_stats(acc: pd.Series) -> dict:
    """Mean, sample std and t-based 95% CI; spread is undefined below two runs."""
    n = len(acc)
    mean = acc.mean() if n else math.nan
    std = acc.std(ddof=1) if n >= 2 else math.nan
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n >= 2 else math.nan
    return {"acc_mean": mean, "acc_std": std, "ci_low": mean - half, "ci_high": mean + half}


def _pairable(a: pd.Series, b: pd.Series) -> bool:
    """A paired test needs the same ≥2 distinct seeds on both sides."""
    if a.isna().any() or b.isna().any() or not (a.is_unique and b.is_unique):
        return False
    return len(a) >= 2 and set(a) == set(b)


def _compare(runs: pd.DataFrame, baseline: pd.DataFrame) -> tuple[float, str]:
    """(p-value, test) for test_acc of completed `runs` vs `baseline`: paired by seed, else Welch."""
    if len(runs) < 2 or len(baseline) < 2:
        return math.nan, ""
    with warnings.catch_warnings():
        # Identical accuracies give zero variance; scipy warns and returns NaN, which we report as such.
        warnings.simplefilter("ignore", RuntimeWarning)
        if _pairable(runs["seed"], baseline["seed"]):
            a, b = runs.sort_values("seed")["test_acc"], baseline.sort_values("seed")["test_acc"]
            p, test = stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue, "paired"
        else:
            p, test = stats.ttest_ind(runs["test_acc"], baseline["test_acc"], equal_var=False).pvalue, "welch"
    return (float(p), test) if np.isfinite(p) else (math.nan, "")


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: counts, accuracy statistics, comparison with its baseline, costs.

    Columns: the axis columns (placement axes blank on baseline rows), variant, baseline, n
    (completed runs), failures, acc_mean, acc_std, ci_low, ci_high, diff (acc_mean − baseline
    acc_mean), p_value, test ("paired"/"welch"/""), acc5_mean when test_acc5 exists, params,
    flops, train_images_per_s. Sorted per non-placement group: baseline, then best accuracy first.
    """
    axes = _axes(runs)
    group_idx = [i for i, a in enumerate(axes) if not _is_placement(a)]
    members: dict[tuple, list] = {}
    for index, key in zip(runs.index, _variant_keys(runs)):
        members.setdefault(key, []).append(index)
    done = runs["status"].eq("completed") & runs["test_acc"].notna()
    completed = {key: runs.loc[idx][done[idx]] for key, idx in members.items()}
    is_base = {key: dict(zip(axes, key)).get(PATTERN) == BASELINE for key in members}
    baselines = {tuple(key[i] for i in group_idx): completed[key] for key in members if is_base[key]}

    rows = []
    for key, idx in members.items():
        mine = completed[key]
        base = baselines.get(tuple(key[i] for i in group_idx))
        p, test = (math.nan, "") if is_base[key] or base is None else _compare(mine, base)
        acc = _acc_stats(mine["test_acc"])
        base_mean = base["test_acc"].mean() if base is not None and len(base) else math.nan
        row = {**dict(zip(axes, key)), "variant": _label(key, axes), "baseline": is_base[key],
               "n": len(mine), "failures": int(runs.loc[idx, "status"].eq("failed").sum()),
               **acc, "diff": acc["acc_mean"] - base_mean, "p_value": p, "test": test}
        if "test_acc5" in runs:
            row["acc5_mean"] = mine["test_acc5"].mean()
        row.update({c: mine[c].mean() for c in COSTS})
        rows.append(row)

    def order(row):
        group = tuple(str(row[axes[i]]) for i in group_idx)
        return group, not row["baseline"], -row["acc_mean"] if row["n"] else math.inf

    return pd.DataFrame(sorted(rows, key=order))


# ---------------------------------------------------------------- gate trajectories


def _split_gate(name: str) -> tuple[str, str, str]:
    """`stage2.block0.gamma_s` -> (stage2, block0, gamma_s); odd names keep what they have."""
    parts = name.split(".")
    if len(parts) < 3:
        return "", "", parts[-1]
    return parts[0], ".".join(parts[1:-1]), parts[-1]


def _gate_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Only completed runs: a diverged or unfinished run would bias the per-epoch mean.
    rows = [{"run": run.id, "variant": run.variant, "seed": run.seed, "epoch": entry["epoch"],
             "gate": gate, **dict(zip(("stage", "block", "kind"), _split_gate(gate))), "value": value}
            for rec, run in zip(records, runs.itertuples()) if run.status == "completed"
            for entry in rec.get("history") or [] for gate, value in (entry.get("gates") or {}).items()
            if value is not None]
    long = pd.DataFrame(rows, columns=GATE_COLUMNS).astype({"epoch": int, "value": float})
    # Blocks of one stage are averaged within a run first, so std and n describe spread over seeds.
    per_run = long.groupby(["variant", "stage", "kind", "epoch", "run"], as_index=False)["value"].mean()
    mean = (per_run.groupby(["variant", "stage", "kind", "epoch"], as_index=False)["value"]
            .agg(mean="mean", std="std", n="count"))
    return long, mean


def gate_trajectories(source: str | os.PathLike | Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gate values per epoch: (long form, per-variant/stage/kind mean per epoch).

    `source` is a results directory or an iterable of record dicts (invalid ones are skipped).
    Long columns: run, variant, seed, epoch, gate, stage, block, kind, value.
    Mean columns: variant, stage, kind, epoch, mean, std, n (n = runs, std over seeds).
    """
    if isinstance(source, str | os.PathLike):
        loaded = _load(source)
        return _gate_frames(loaded.records, loaded.runs)
    records = []
    for rec in source:
        try:
            records.append(_check_record(rec))
        except _BadRecord:
            continue
    return _gate_frames(records, _runs_frame(records, []))


# ---------------------------------------------------------------- tables


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _si(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{suffix}"
    return f"{x:.0f}"


def _p(p: float) -> str:
    return "" if _isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _cells(fn, values) -> list[str]:
    """Format each value, leaving missing ones empty."""
    return ["" if _isna(x) else fn(x) for x in values]


def _display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings for humans: accuracies in %, Δ in percentage points."""
    std = _cells(lambda s: f" ± {_pct(s)}", summary["acc_std"])
    high = _cells(_pct, summary["ci_high"])
    diff = _cells(lambda d: f"{100 * d:+.2f}", summary["diff"])
    table = pd.DataFrame({
        "variant": summary["variant"],
        "n": summary["n"].astype(str),
        "failed": summary["failures"].astype(str),
        "test acc %": [m + s for m, s in zip(_cells(_pct, summary["acc_mean"]), std)],
        "95% CI": [f"[{lo}, {hi}]" if lo else "" for lo, hi in zip(_cells(_pct, summary["ci_low"]), high)],
        "Δ vs base": ["baseline" if b else d for b, d in zip(summary["baseline"], diff)],
        "p": [_p(p) + (f" ({t})" if t else "") for p, t in zip(summary["p_value"], summary["test"])],
    })
    if "acc5_mean" in summary:
        table["top-5 %"] = _cells(_pct, summary["acc5_mean"])
    table["params"] = _cells(_si, summary["params"])
    table["FLOPs"] = _cells(_si, summary["flops"])
    table["img/s"] = _cells(lambda v: f"{v:,.0f}", summary["train_images_per_s"])
    return table


def format_summary(summary: pd.DataFrame) -> str:
    """Fixed-width text table for the terminal."""
    table = _display_table(summary)
    widths = {c: max(len(c), *(len(v) for v in table[c])) for c in table}

    def line(cells):
        return "  ".join(v.ljust(widths[c]) if c == "variant" else v.rjust(widths[c])
                         for c, v in zip(table.columns, cells)).rstrip()

    rule = "  ".join("-" * w for w in widths.values())
    return "\n".join([line(table.columns), rule, *(line(r) for r in table.itertuples(index=False))])


def format_markdown(summary: pd.DataFrame) -> str:
    """GitHub markdown table (written by hand: pandas' to_markdown needs tabulate)."""
    table = _display_table(summary)

    def line(cells):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    align = ["---" if c == "variant" else "---:" for c in table.columns]
    return "\n".join([line(table.columns), line(align), *(line(r) for r in table.itertuples(index=False))])


def format_latex(summary: pd.DataFrame) -> str:
    """booktabs tabular; Δ is spelled out because plain LaTeX has no Greek in text mode."""
    table = _display_table(summary).rename(columns={"Δ vs base": "diff vs base"})
    return table.to_latex(index=False, escape=True, column_format="l" + "r" * (table.shape[1] - 1))


# ---------------------------------------------------------------- writing the report


def _write(path: Path, data: str | bytes) -> Path:
    """Atomically (temp file + rename): a grid can rewrite its report while someone reads it."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write(path, lambda tmp: tmp.write_bytes(payload))


@dataclass
class Report:
    """Everything `write_report` computed, and where it put it."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    gates: pd.DataFrame
    gates_mean: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def _markdown_document(results_dir: Path, summary: pd.DataFrame, problems: list[str]) -> str:
    parts = [f"# Results: {results_dir.name}", "",
             "Test accuracy over completed runs (mean ± std, t-based 95% CI); Δ in percentage points "
             "against the `pattern none` baseline with the same non-placement axes.", "",
             format_markdown(summary), ""]
    if problems:
        parts += ["## Skipped records", "", *(f"- `{p}`" for p in problems), ""]
    return "\n".join(parts)


def write_report(results_dir: str | os.PathLike) -> Report:
    """Summarize a results dir and write summary.{csv,md,tex}, gates{,_mean}.csv, accuracy.png, gates.png.

    gates.png is skipped when no run recorded gates. Raises UserError if nothing is readable.
    """
    results_dir = Path(results_dir)
    loaded = _load(results_dir)
    summary = summarize(loaded.runs)
    gates, gates_mean = _gate_frames(loaded.records, loaded.runs)
    files = {  # name -> content; text is UTF-8 (± and Δ in the tables)
        "summary.csv": summary.to_csv(index=False),
        "summary.md": _markdown_document(results_dir, summary, loaded.problems),
        "summary.tex": format_latex(summary),
        "gates.csv": gates.to_csv(index=False),
        "gates_mean.csv": gates_mean.to_csv(index=False),
        "accuracy.png": png_bytes(plot_accuracy(summary)),
    }
    if len(gates_mean):
        files["gates.png"] = png_bytes(plot_gates(gates_mean))
    written = [_write(results_dir / name, data) for name, data in files.items()]
    return Report(loaded.runs, summary, gates, gates_mean, loaded.problems, written)

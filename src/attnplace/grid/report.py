"""Aggregate one experiment's runs into per-variant statistics, gate trajectories, tables and plots.

`records.py` decides which runs form the experiment (and refuses mixtures), `stats.py` holds the
formulas, `tables.py` and `plots.py` the presentation; this module puts them together.
"""

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from . import stats
from .calls import describe_calls, read_calls
from .plots import plot_accuracy, plot_gates, png_bytes
from .records import BASELINE, PATTERN, axis_columns, is_placement, load, runs_frame, variant_keys
from .tables import format_latex, format_markdown
from .validate import BadRecord, check_record

COSTS = ("params", "flops", "train_images_per_s")
GATE_COLUMNS = ["run", "variant", "seed", "epoch", "gate", "stage", "block", "kind", "value"]
SMALL_N = 3  # below this many seeds a t interval is too wide to say much


# ---------------------------------------------------------------- per-variant statistics


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: counts, accuracy statistics, comparison with its baseline, costs.

    Columns: the axis columns (placement axes blank on baseline rows), variant, baseline, n (completed
    runs), failures, acc_mean, acc_std, ci_low, ci_high; against the baseline with the same
    non-placement axes: diff (the mean paired difference over the shared seeds, or the difference of
    means when unpaired), diff_ci_low, diff_ci_high, n_pairs, p_value, p_holm (Holm over the variants
    compared with one baseline), effect_dz (d_z when paired, Hedges' g when Welch), test ("paired",
    "welch" or ""), baseline_acc_mean; then test_on, acc5_mean when test_acc5 exists, params, flops, train_images_per_s.
    Sorted per non-placement group: baseline, then best accuracy first.
    """
    axes = axis_columns(runs)
    group_idx = [i for i, a in enumerate(axes) if not is_placement(a)]
    members: dict[tuple, list] = {}
    for index, key in zip(runs.index, variant_keys(runs)):
        members.setdefault(key, []).append(index)
    done = runs["status"].eq("completed") & runs["test_acc"].notna()
    completed = {key: runs.loc[idx][done[idx]] for key, idx in members.items()}
    is_base = {key: dict(zip(axes, key)).get(PATTERN) == BASELINE for key in members}
    group = {key: tuple(key[i] for i in group_idx) for key in members}
    baselines = {group[key]: completed[key] for key in members if is_base[key]}

    rows = []
    for key, idx in members.items():
        mine, base = completed[key], baselines.get(group[key])
        by_seed = dict(zip(mine["seed"], mine["test_acc"]))
        if is_base[key]:
            comparison = stats.Comparison(diff=0.0)
        elif base is None:
            comparison = stats.Comparison()
        else:
            comparison = stats.compare(by_seed, dict(zip(base["seed"], base["test_acc"])))
        row = {**dict(zip(axes, key)), "variant": runs.loc[idx[0], "variant"], "baseline": is_base[key],
               **stats.describe(mine["test_acc"]), "failures": int(runs.loc[idx, "status"].eq("failed").sum()),
               "diff": comparison.diff, "diff_ci_low": comparison.diff_ci_low,
               "diff_ci_high": comparison.diff_ci_high, "n_pairs": comparison.n_pairs,
               "p_value": comparison.p_value, "effect_dz": comparison.effect, "test": comparison.test,
               "baseline_acc_mean": base["test_acc"].mean() if base is not None and len(base) else math.nan,
               "test_on": "/".join(sorted(set(runs.loc[idx, "test_on"])))}
        if "test_acc5" in runs:
            row["acc5_mean"] = mine["test_acc5"].mean()
        row.update({c: mine[c].mean() for c in COSTS})
        rows.append((group[key], row))

    summary = pd.DataFrame([row for _, row in rows])
    summary.insert(summary.columns.get_loc("p_value") + 1, "p_holm", _holm_by_group([g for g, _ in rows], summary))
    order = sorted(range(len(rows)), key=lambda i: (tuple(map(str, rows[i][0])), not summary["baseline"][i],
                                                     -summary["acc_mean"][i] if summary["n"][i] else math.inf))
    return summary.iloc[order].reset_index(drop=True)


def _holm_by_group(groups: list[tuple], summary: pd.DataFrame) -> list[float]:
    """Holm within each baseline's family of comparisons (the variants that share its non-placement axes)."""
    adjusted = [math.nan] * len(summary)
    for g in set(groups):
        members = [i for i, other in enumerate(groups) if other == g]
        for i, p in zip(members, stats.holm([summary["p_value"][i] for i in members])):
            adjusted[i] = p
    return adjusted


def caveats(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the table: which weights were tested, small n, unpaired tests."""
    lines = []
    completed = runs[runs["status"] == "completed"]
    epochs = sorted({int(e) for e in completed["tested_epoch"].dropna()})
    for test_on in sorted(set(completed["test_on"])):
        which = ("the final epoch's weights" if test_on == "final" else
                 "the weights of the epoch with the best validation accuracy")
        where = f" (epoch {', '.join(map(str, epochs[:5]))}{'…' if len(epochs) > 5 else ''}, counted from 0)" \
            if epochs else ""
        lines.append(f"Test accuracy is measured on {which}{where}.")
    small = summary[(summary["n"] > 0) & (summary["n"] < SMALL_N)]["variant"].tolist()
    if small:
        lines.append(f"warning: n < {SMALL_N} for {', '.join(small)}: confidence intervals are wide and "
                     f"p-values unreliable; run more seeds.")
    welch = summary[summary["test"] == "welch"]["variant"].tolist()
    if welch:
        lines.append(f"Compared unpaired (Welch; effect = Hedges' g) for lack of 2 shared seeds: {', '.join(welch)}.")
    return lines + _code_caveat(completed)


def _code_caveat(completed: pd.DataFrame) -> list[str]:
    """Which code trained the runs (each record's sessions say), when the records say it."""
    codes = completed["code"].value_counts(dropna=False)
    if codes.empty or codes.index.isna().all():
        return []  # records from before code versions were recorded
    if len(codes) == 1:
        return [f"All runs trained under one code version (source sha256 {codes.index[0]})."]
    counts = ", ".join(f"{'not recorded' if pd.isna(code) else code}: {n}" for code, n in codes.items())
    return [f"Runs trained under {len(codes)} code versions (source sha256 per run; a+b: resumed under b): {counts}."]


# ---------------------------------------------------------------- gate trajectories


def _split_gate(name: str) -> tuple[str, str, str]:
    """`stage2.block0.gamma_s` -> (stage2, block0, gamma_s); odd names keep what they have."""
    parts = name.split(".")
    if len(parts) < 3:
        return "", "", parts[-1]
    return parts[0], ".".join(parts[1:-1]), parts[-1]


def _trajectory(rec: dict) -> Iterable[tuple[int, dict]]:
    """(epochs trained, gate values): the initial values at 0, then the value after each epoch."""
    if rec.get("initial_gates"):
        yield 0, rec["initial_gates"]
    for entry in rec.get("history") or []:
        yield entry["epoch"] + 1, entry.get("gates") or {}


def _gate_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Only completed runs: a diverged or unfinished run would bias the per-epoch mean.
    rows = [{"run": run.id, "variant": run.variant, "seed": run.seed, "epoch": epoch,
             "gate": gate, **dict(zip(("stage", "block", "kind"), _split_gate(gate))), "value": value}
            for rec, run in zip(records, runs.itertuples()) if run.status == "completed"
            for epoch, gates in _trajectory(rec) for gate, value in gates.items() if value is not None]
    long = pd.DataFrame(rows, columns=GATE_COLUMNS).astype({"epoch": int, "value": float})
    # Blocks of one stage are averaged within a run first, so std and n describe spread over seeds.
    per_run = long.groupby(["variant", "stage", "kind", "epoch", "run"], as_index=False)["value"].mean()
    mean = (per_run.groupby(["variant", "stage", "kind", "epoch"], as_index=False)["value"]
            .agg(mean="mean", std="std", n="count"))
    return long, mean


def gate_trajectories(source: str | os.PathLike | Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gate values per epoch: (long form, per-variant/stage/kind mean per epoch).

    `source` is a results directory or an iterable of record dicts (invalid ones are skipped).
    `epoch` counts the epochs trained: 0 is the initial value, e the value after the e-th epoch.
    Long columns: run, variant, seed, epoch, gate, stage, block, kind, value.
    Mean columns: variant, stage, kind, epoch, mean, std, n (n = runs, std over seeds).
    """
    if isinstance(source, str | os.PathLike):
        loaded = load(source)
        return _gate_frames(loaded.records, loaded.runs)
    records = []
    for rec in source:
        try:
            records.append(check_record(rec))
        except BadRecord:
            continue
    return _gate_frames(records, runs_frame(records, []))


# ---------------------------------------------------------------- writing the report


@dataclass
class Report:
    """Everything `write_report` computed, and where it put it."""

    records: list[dict]
    runs: pd.DataFrame
    summary: pd.DataFrame
    gates: pd.DataFrame
    gates_mean: pd.DataFrame
    caveats: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def _markdown_document(results_dir: Path, report: Report) -> str:
    parts = [f"# Results: {results_dir.name}", "",
             "Test accuracy over completed runs: mean ± std and t-based 95% CI (clipped to [0, 100] %). Δ in "
             "percentage points against the `pattern none` baseline with the same non-placement axes, paired "
             "on the seeds both share (`pairs`), with its 95% CI, the t-test's p-value, the Holm-corrected "
             "p-value over the comparisons with that baseline, and the effect size (d_z paired, Hedges' g "
             "unpaired).", "", format_markdown(report.summary), ""]
    parts += [f"- {line}" for line in report.caveats + report.notes]
    if calls := describe_calls(read_calls(results_dir)):
        parts += ["", "## How these results were made (calls.jsonl)", "", *(f"- {line}" for line in calls)]
    if report.problems:
        parts += ["", "## Skipped records", "", *(f"- `{p}`" for p in report.problems)]
    return "\n".join(parts) + "\n"


def write_report(results_dir: str | os.PathLike) -> Report:
    """Summarize a results dir and write summary.{csv,md,tex}, gates{,_mean}.csv, accuracy.png, gates.png.

    gates.png is skipped when no run recorded gates. Raises UserError if nothing is readable or the
    runs mix experiments.
    """
    results_dir = Path(results_dir)
    loaded = load(results_dir)
    summary = summarize(loaded.runs)
    gates, gates_mean = _gate_frames(loaded.records, loaded.runs)
    report = Report(loaded.records, loaded.runs, summary, gates, gates_mean, caveats(summary, loaded.runs),
                    loaded.problems, loaded.notes)
    files = {  # name -> content; text is UTF-8 (± and Δ in the tables)
        "summary.csv": summary.to_csv(index=False),
        "summary.md": _markdown_document(results_dir, report),
        "summary.tex": format_latex(summary),
        "gates.csv": gates.to_csv(index=False),
        "gates_mean.csv": gates_mean.to_csv(index=False),
        "accuracy.png": png_bytes(plot_accuracy(summary, loaded.runs)),
    }
    if len(gates_mean):
        files["gates.png"] = png_bytes(plot_gates(gates_mean))
    for name, data in files.items():
        payload = data.encode("utf-8") if isinstance(data, str) else data
        # Atomically (temp file + rename): a grid can rewrite its report while someone reads it.
        report.written.append(atomic_write(results_dir / name, lambda tmp, b=payload: tmp.write_bytes(b)))
    return report

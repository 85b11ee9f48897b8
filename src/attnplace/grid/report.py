"""Aggregate one experiment's runs into per-variant statistics, all-pairs comparisons, gate and mask
trajectories, tables and plots.

`records.py` decides which runs form the experiment (and refuses mixtures), `stats.py` holds the
formulas, `tables.py` and `plots.py` the presentation. This module puts them together around one frame:
variant × seed → the report's metric (`accuracies`), cut into groups, the variants that share every
non-placement axis and so are compared with each other and with their baseline (`groups`).
"""

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..errors import UserError
from . import stats
from .calls import describe_calls, read_calls
from .plots import plot_accuracy, plot_gates, plot_masks, plot_pairs, png_bytes
from .records import (BASELINE, PATTERN, PLACEMENT, axis_columns, environment_differences, label, load,
                      placement_label, runs_frame, variant_keys)
from .spec import REPORT_METRICS, ReportSettings, report_settings
from .tables import format_latex, format_markdown, format_pairs_markdown, omnibus_lines
from .validate import BadRecord, check_record

COSTS = ("params", "flops", "train_images_per_s")
GATE_COLUMNS = ["run", "variant", "seed", "epoch", "gate", "stage", "block", "kind", "value"]
MASK_COLUMNS = ["run", "variant", "seed", "epoch", "stage", "block", "module", "stat", "value"]
EPOCH_OF = {"test_acc": "tested_epoch", "val_acc": "final_epoch"}  # the epoch whose weights a metric reads
SMALL_N = 3  # below this many seeds a t interval is too wide to say much
SUMMARY_COLUMNS = ["variant", "group", "baseline", "n", "acc_mean", "acc_std", "ci_low", "ci_high", "failures",
                   "metric", "epoch", "equivalence_margin", *stats.COMPARISON_COLUMNS, "mean_rank", "wins",
                   "baseline_acc_mean", "test_on", "acc5_mean", *COSTS]


# ---------------------------------------------------------------- the frame: variants × seeds, in groups


def variant_table(runs: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per variant, in report order: its axis values (placement axes blank on `none`), `variant`,
    `group` (the label of its non-placement axes; "" for a one-group experiment) and `baseline`.

    The baseline of a group is its `model.pattern == none` variant, or the variant that `baseline` names by
    its label or by its placement part (`p1/se`: the p1/se variant of every group). It comes first in its
    group; the rest keep the grid's order of axis values. A name that is no variant is a UserError.
    """
    first = runs.sort_values("order", kind="stable").drop_duplicates("variant")
    axes = axis_columns(runs)
    keys = variant_keys(first)
    group_axes = [a for a in axes if a not in PLACEMENT]
    table = pd.DataFrame(keys, columns=axes, dtype=object)
    table["variant"] = first["variant"].to_numpy()
    table["group"] = [label(tuple(v for a, v in zip(axes, k) if a not in PLACEMENT), group_axes) for k in keys]
    placements = pd.Series([placement_label(k, axes) for k in keys])
    table["baseline"] = table[PATTERN].eq(BASELINE) if baseline is None else \
        table["variant"].eq(baseline) | placements.eq(baseline)
    if baseline is not None and not table["baseline"].any():
        raise UserError(f"baseline {baseline!r} is not a variant of this report; valid: {', '.join(table['variant'])}")
    table["order"] = first["order"].to_numpy()
    table["group_order"] = table.groupby("group")["order"].transform("min")
    table = table.sort_values(["group_order", "baseline", "order"], ascending=[True, False, True], kind="stable")
    return table.drop(columns=["order", "group_order"]).reset_index(drop=True)


def accuracies(runs: pd.DataFrame, metric: str, variants: Iterable[str]) -> pd.DataFrame:
    """variant × seed → `metric` of each completed run, rows in `variants`' order (all NaN for a variant
    without one). Seeds index the columns, so pairing by seed is aligning columns."""
    done = runs[runs["status"].eq("completed") & runs[metric].notna()]
    return done.pivot(index="variant", columns="seed", values=metric).reindex(list(variants))


@dataclass(frozen=True)
class Group:
    """The variants compared with each other: their rows of `variant_table` and of `accuracies`."""

    name: str
    variants: pd.DataFrame
    acc: pd.DataFrame
    baseline: str | None  # None: this group has no baseline variant, so nothing is compared with one


def groups(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> list[Group]:
    variants = variant_table(runs, settings.baseline)
    acc = accuracies(runs, settings.metric, variants["variant"])
    return [Group(name, rows, acc.loc[rows["variant"]], next(iter(rows.loc[rows["baseline"], "variant"]), None))
            for name, rows in variants.groupby("group", sort=False)]


# ---------------------------------------------------------------- statistics of the frame


def summarize(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant, in report order (group by group, baseline first).

    Columns: the axis columns, variant, group, baseline; n (completed runs), acc_mean, acc_std, ci_low,
    ci_high of `settings.metric`; failures, metric, epoch (the epoch(s) whose weights it read, counted
    from 0), equivalence_margin (pp); against the group's baseline (`stats.against`): diff (the mean
    paired difference over the shared seeds, or the difference of means when unpaired), diff_ci_low,
    diff_ci_high, n_pairs, p_value, p_holm (Holm over the variants compared with one baseline), effect and
    effect_kind (d_z paired, g for Hedges' g when Welch), test ("paired", "welch" or ""), tost_p, verdict,
    detectable_diff (80% power at the observed SD), seeds_for_margin; mean_rank and wins over the seeds
    every variant of the group completed; baseline_acc_mean, test_on, acc5_mean when test_acc5 exists,
    params, flops, train_images_per_s.
    """
    margin = settings.equivalence_margin / 100
    parts = []
    for group in groups(runs, settings):
        described = pd.DataFrame([stats.describe(row.dropna()) for _, row in group.acc.iterrows()],
                                 index=group.acc.index)
        compared = stats.against(group.acc, group.baseline, margin)
        parts.append(pd.concat([group.variants.set_index("variant"), described, compared, stats.ranks(group.acc)],
                               axis=1))
    summary = pd.concat(parts).join(_run_facts(runs, settings.metric)).rename_axis("variant").reset_index()
    summary["metric"] = settings.metric
    summary["equivalence_margin"] = settings.equivalence_margin
    summary["epoch"] = summary["epoch"].fillna("")
    base_mean = summary["acc_mean"].where(summary["baseline"])
    summary["baseline_acc_mean"] = base_mean.groupby(summary["group"], sort=False).transform("max")
    return summary[[*axis_columns(runs), *(c for c in SUMMARY_COLUMNS if c in summary)]]


def _run_facts(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant: failures, the epochs `metric` read, test_on, and the means over its completed runs of
    top-5 accuracy (when recorded) and the costs."""
    done = runs[runs["status"].eq("completed") & runs[metric].notna()]
    facts = pd.DataFrame({"failures": runs["status"].eq("failed").groupby(runs["variant"]).sum()})
    facts["epoch"] = done.groupby("variant")[EPOCH_OF[metric]].agg(_span)
    facts["test_on"] = runs.groupby("variant")["test_on"].agg(lambda s: "/".join(sorted(set(s))))
    means = done.groupby("variant")[[*(["test_acc5"] if "test_acc5" in runs else []), *COSTS]].mean()
    return facts.join(means.rename(columns={"test_acc5": "acc5_mean"}))


def _span(epochs: pd.Series) -> str:
    """`9`, or `5-9` when the runs read different epochs (best_val); empty when none was recorded."""
    epochs = epochs.dropna()
    low, high = (int(epochs.min()), int(epochs.max())) if len(epochs) else (None, None)
    return "" if low is None else str(low) if low == high else f"{low}-{high}"


def pairs(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """Every variant of a group against every other (`stats.pairwise`, Holm over the group's pairs), with
    the group and metric named: the rows of pairs.csv."""
    margin = settings.equivalence_margin / 100
    frames = [stats.pairwise(group.acc, margin).assign(group=group.name, metric=settings.metric,
                                                        equivalence_margin=settings.equivalence_margin)
              for group in groups(runs, settings)]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["group", *frame.columns.drop("group")]]


def omnibus(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per group: does any of its variants differ (`stats.omnibus`: Friedman, RM-ANOVA)?"""
    return pd.DataFrame([{"group": group.name, "metric": settings.metric, **stats.omnibus(group.acc)}
                         for group in groups(runs, settings)])


def caveats(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the table: which weights the metric read, small n, unpaired
    tests, which code trained the runs, and mixed environments when they were allowed."""
    completed = runs[runs["status"] == "completed"]
    lines = _metric_caveat(completed, summary["metric"].iloc[0] if len(summary) else "test_acc")
    small = summary[(summary["n"] > 0) & (summary["n"] < SMALL_N)]["variant"].tolist()
    if small:
        lines.append(f"warning: n < {SMALL_N} for {', '.join(small)}: confidence intervals are wide and "
                     f"p-values unreliable; run more seeds.")
    welch = summary[summary["test"] == "welch"]["variant"].tolist()
    if welch:
        lines.append(f"Compared unpaired (Welch; effect = Hedges' g) for lack of 2 shared seeds: {', '.join(welch)}.")
    if mixed := environment_differences(runs):
        lines.append(f"warning: runs differ in {mixed}, allowed by --allow-mixed-environments: differences "
                     f"between them include the environment's.")
    return lines + _code_caveat(completed)


def _metric_caveat(completed: pd.DataFrame, metric: str) -> list[str]:
    epochs = sorted({int(e) for e in completed[EPOCH_OF[metric]].dropna()})
    where = f" (epoch {', '.join(map(str, epochs[:5]))}{'…' if len(epochs) > 5 else ''}, counted from 0)" \
        if epochs else ""
    if metric == "val_acc":
        return [f"The metric is val_acc: the validation accuracy after each run's final epoch{where}; it explores, "
                f"the test split (--metric test_acc) confirms."]
    lines = []
    for test_on in sorted(set(completed["test_on"])):
        which = ("the final epoch's weights" if test_on == "final" else
                 "the weights of the epoch with the best validation accuracy")
        lines.append(f"Test accuracy is measured on {which}{where}.")
    return lines


def _code_caveat(completed: pd.DataFrame) -> list[str]:
    """Which code trained the runs (each record's sessions say), when the records say it."""
    codes = completed["code"].value_counts(dropna=False)
    if codes.empty or codes.index.isna().all():
        return []  # records from before code versions were recorded
    if len(codes) == 1:
        return [f"All runs trained under one code version (source sha256 {codes.index[0]})."]
    counts = ", ".join(f"{'not recorded' if pd.isna(code) else code}: {n}" for code, n in codes.items())
    return [f"Runs trained under {len(codes)} code versions (source sha256 per run; a+b: resumed under b): {counts}."]


# ---------------------------------------------------------------- gate and mask trajectories


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


def _gate_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _trajectories(records, runs, "gates", _split_gate, GATE_COLUMNS, ["variant", "stage", "kind"])


def _mask_frames(records: list[dict], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    return _gate_frames(*_records(source))


def mask_trajectories(source: str | os.PathLike | Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attention-mask statistics per epoch, from each history entry's `masks` (records before them have none).

    `epoch` counts the epochs trained (e: after the e-th). Long columns: run, variant, seed, epoch, stage,
    block, module (attn, attn_s, attn_r), stat (channel_/spatial_ mean, std, low, high; gain), value.
    Mean columns: variant, stage, module, stat, epoch, mean, std, n (blocks averaged within a run, then
    mean and std over seeds).
    """
    return _mask_frames(*_records(source))


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    """Everything `build_report` computed, and where `write_report` put it."""

    records: list[dict]
    runs: pd.DataFrame
    settings: ReportSettings
    summary: pd.DataFrame
    pairs: pd.DataFrame
    omnibus: pd.DataFrame
    gates: pd.DataFrame
    gates_mean: pd.DataFrame
    masks: pd.DataFrame
    masks_mean: pd.DataFrame
    caveats: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def build_report(results_dir: str | os.PathLike, allow_mixed_environments: bool = False, **overrides) -> Report:
    """Every table of a results dir, computed and not written.

    The settings are grid.json's `report:` section with `overrides` (`baseline`, `metric`,
    `equivalence_margin`; None keeps the section's) on top. Raises UserError if nothing is readable, the
    runs mix experiments or (unless allowed) environments, the baseline is no variant, or no completed run
    has the metric.
    """
    results_dir = Path(results_dir)
    loaded = load(results_dir, allow_mixed_environments)
    settings = dataclasses.replace(report_settings(loaded.grid.report, str(results_dir / "grid.json")),
                                   **{k: v for k, v in overrides.items() if v is not None})
    completed = loaded.runs.loc[loaded.runs["status"] == "completed", settings.metric]
    if len(completed) and completed.isna().all():
        raise UserError(f"{results_dir}: no completed run has {settings.metric} (val_acc needs data.val_size > 0); "
                        f"valid metrics: {', '.join(REPORT_METRICS)}")
    summary = summarize(loaded.runs, settings)
    return Report(loaded.records, loaded.runs, settings, summary, pairs(loaded.runs, settings),
                  omnibus(loaded.runs, settings), *_gate_frames(loaded.records, loaded.runs),
                  *_mask_frames(loaded.records, loaded.runs), caveats(summary, loaded.runs), loaded.problems,
                  loaded.notes)


def _markdown_document(results_dir: Path, report: Report) -> str:
    margin = report.settings.equivalence_margin
    parts = [f"# Results: {results_dir.name}", "",
             f"`{report.settings.metric}` over completed runs: mean ± std and t-based 95% CI (clipped to [0, 100] %), "
             f"read at the epoch shown. Δ in percentage points against the baseline of the variant's group "
             f"(`{report.settings.baseline or 'pattern none'}`; a group is the variants that share every "
             "non-placement axis), paired on the seeds both share (`pairs`), with its 95% CI, the t-test's p-value, the Holm-corrected p-value over the comparisons with that baseline, the effect "
             f"size (d_z paired, Hedges' g unpaired), the TOST p-value for equivalence within ±{margin:g} pp and "
             "the verdict (different: Holm p < 0.05; equivalent: TOST p < 0.05; else inconclusive); the smallest "
             "difference these seeds detect with 80% power at the observed SD of the differences, and the seeds "
             f"±{margin:g} pp would need; the mean rank (1 = best) and wins on the seeds every variant completed.",
             "", format_markdown(report.summary), ""]
    parts += [f"- {line}" for line in report.caveats + report.notes]
    parts += ["", "## Every variant against every other (pairs.csv, pairs.png)", "",
              *(f"- {line}" for line in omnibus_lines(report.omnibus)), "",
              format_pairs_markdown(report.pairs, report.summary, margin)]
    if calls := describe_calls(read_calls(results_dir)):
        parts += ["", "## How these results were made (calls.jsonl)", "", *(f"- {line}" for line in calls)]
    if report.problems:
        parts += ["", "## Skipped records", "", *(f"- `{p}`" for p in report.problems)]
    return "\n".join(parts) + "\n"


def write_report(results_dir: str | os.PathLike, allow_mixed_environments: bool = False, **overrides) -> Report:
    """`build_report`, then write summary.{csv,md,tex}, pairs.csv, gates{,_mean}.csv, masks.csv and the plots
    accuracy.png, pairs.png, gates.png and masks.png; the last two are skipped when no run recorded any."""
    results_dir = Path(results_dir)
    report = build_report(results_dir, allow_mixed_environments, **overrides)
    files = {  # name -> content; text is UTF-8 (± and Δ in the tables)
        "summary.csv": report.summary.to_csv(index=False),
        "summary.md": _markdown_document(results_dir, report),
        "summary.tex": format_latex(report.summary),
        "pairs.csv": report.pairs.to_csv(index=False),
        "gates.csv": report.gates.to_csv(index=False),
        "gates_mean.csv": report.gates_mean.to_csv(index=False),
        "accuracy.png": png_bytes(plot_accuracy(report.summary, report.runs)),
        "pairs.png": png_bytes(plot_pairs(report.pairs, report.summary)),
    }
    if len(report.gates_mean):
        files["gates.png"] = png_bytes(plot_gates(report.gates_mean))
    if len(report.masks):
        files["masks.csv"] = report.masks.to_csv(index=False)
        files["masks.png"] = png_bytes(plot_masks(report.masks_mean))
    for name, data in files.items():
        payload = data.encode("utf-8") if isinstance(data, str) else data
        # Atomically (temp file + rename): a grid can rewrite its report while someone reads it.
        report.written.append(atomic_write(results_dir / name, lambda tmp, b=payload: tmp.write_bytes(b)))
    return report

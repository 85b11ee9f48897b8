"""The report of one experiment: `build_report` computes every table from the experiment's records, and
`write_report` writes its files: summary.{csv,md,tex} (the markdown document with its caveats), pairs.csv,
factorial.csv (when the report asks for one), the validation curves, gates, masks and the plots.
"""

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write, folder_errors
from ..errors import UserError
from ..run.calls import describe_calls, read_calls
from .block_tables import block_lines, counted_line, hardware_line, left_out_lines
from .contrast import contrast
from .seed_blocks import block_kinds
from .curves import quarter_gaps, validation_curves
from .hardware import hardware_tests
from .mixing import environment_differences
from .plots import plot_accuracy, plot_curves, plot_factorial, plot_gates, plot_masks, plot_pairs, png_bytes
from .records import load
from ..run.report_settings import REPORT_METRICS, ReportSettings, report_settings
from .summary import EPOCH_OF, factorial, omnibus, pairs, summarize
from .tables import (factorial_lines, format_contrast_markdown, format_curves_markdown, format_latex, format_markdown,
                     format_pairs_markdown, omnibus_lines, primary_lines, tuned_lines)
from .trajectories import gate_frames, mask_frames
from .tuned import Tuned, tune, tuned_table

SMALL_N = 3  # below this many seeds a t interval is too wide to say much
STALLED = 0.95  # a final training loss at least this share of the first epoch's: the run did not learn


# ---------------------------------------------------------------- what a reader must know


def caveats(summary: pd.DataFrame, runs: pd.DataFrame, records: Sequence[dict] = ()) -> list[str]:
    """What a reader must know before trusting the table: which weights the metric read, small n, unpaired
    tests, completed runs that did not learn, which code trained the runs, and mixed environments when they were
    allowed."""
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
    return lines + _stalled_caveat(records) + _code_caveat(completed)


def _stalled_caveat(records: Sequence[dict]) -> list[str]:
    """Completed runs whose training loss hardly fell. Such a run stays in its variant's mean and SD (it is a
    result: that variant can fail to train), so the reader is told which run makes that SD large."""
    stalled = []
    for rec in records:
        losses = [h["train_loss"] for h in rec.get("history") or [] if h.get("train_loss") is not None]
        if rec.get("status") == "completed" and len(losses) >= 2 and losses[-1] >= STALLED * losses[0]:
            stalled.append(f"{rec['id']} (training loss {losses[0]:.2f} after the first epoch, {losses[-1]:.2f} "
                           f"after the last)")
    if not stalled:
        return []
    return [f"warning: {len(stalled)} completed run(s) did not learn: {'; '.join(stalled)}. Each stays in its "
            f"variant's mean and SD."]


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
    factorial: pd.DataFrame  # empty unless the settings name factorial axes
    gates: pd.DataFrame
    gates_mean: pd.DataFrame
    masks: pd.DataFrame
    masks_mean: pd.DataFrame
    caveats: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the terminal's, `block_notes` included
    written: list[Path] = field(default_factory=list)
    blocks: pd.DataFrame = field(default_factory=pd.DataFrame)  # every seed block (`blocks.seed_blocks`)
    hardware: pd.DataFrame = field(default_factory=pd.DataFrame)  # hardware × variant (`hardware.hardware_tests`)
    block_notes: list[str] = field(default_factory=list)  # blocks in the tables, blocks left out, hardware × variant
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # val acc and Δ per epoch (`curves.validation_curves`)
    quarters: pd.DataFrame = field(default_factory=pd.DataFrame)  # per quarter of training (`curves.quarter_gaps`)
    contrast: pd.DataFrame = field(default_factory=pd.DataFrame)  # across groups, when asked (`contrast.contrast`)
    tuned: Tuned | None = None  # each variant at its own value of an axis, when asked (`tuned.tune`)


def build_report(results_dir: str | os.PathLike, allow_mixed_environments: bool = False, **overrides) -> Report:
    """Every table of a results dir, computed and not written.

    The settings are grid.json's `report:` section with `overrides` (`baseline`, `metric`, `equivalence_margin`,
    `primary`, `within`, `factorial`, `contrast`, `tune`, `choose_on`; None keeps the section's) on top. Raises
    UserError if nothing is readable, the runs mix experiments or (unless allowed) environments, the baseline is no
    variant, no completed run has the metric, the `within`/`factorial` axes are no placement axes (or do not cross), the
    `contrast` names no non-placement axis or value of this report, or `tune` no axis the grid varies.
    """
    results_dir = Path(results_dir)
    loaded = load(results_dir, allow_mixed_environments)
    settings = dataclasses.replace(report_settings(loaded.grid.report, str(results_dir / "grid.json")),
                                   **{k: v for k, v in overrides.items() if v is not None})
    records, runs = loaded.records, loaded.runs
    completed = runs.loc[runs["status"] == "completed", settings.metric]
    if len(completed) and completed.isna().all():
        raise UserError(f"{results_dir}: no completed run has {settings.metric} (val_acc needs data.val_size > 0); "
                        f"valid metrics: {', '.join(REPORT_METRICS)}")
    summary = summarize(runs, settings)
    tests = hardware_tests(runs, settings)
    block_notes = [counted_line(loaded.blocks, loaded.grid.wanted), *left_out_lines(loaded.blocks),
                   _hardware_note(runs, tests)]
    return Report(records, runs, settings, summary, pairs(runs, settings), omnibus(runs, settings),
                  factorial(runs, settings), *gate_frames(records, runs), *mask_frames(records, runs),
                  caveats(summary, runs, records), loaded.problems, loaded.notes + block_notes, blocks=loaded.blocks,
                  hardware=tests, block_notes=block_notes,
                  curves=validation_curves(records, runs, settings), quarters=quarter_gaps(records, runs, settings),
                  contrast=contrast(runs, settings), tuned=tune(runs, settings))


def _hardware_note(runs: pd.DataFrame, tests: pd.DataFrame) -> str:
    return hardware_line(tests, block_kinds(runs).value_counts(sort=False))


def _markdown_document(results_dir: Path, report: Report) -> str:
    margin = report.settings.equivalence_margin
    parts = [f"# Results: {results_dir.name}", "",
             f"`{report.settings.metric}` over completed runs: mean ± std and t-based 95% CI (clipped to [0, 100] %), "
             f"read at the epoch shown. Δ in percentage points against the baseline of the variant's group "
             f"(`{report.settings.baseline or 'pattern none'}`; a group is the variants that share every "
             "non-placement axis), paired on the seeds both share (`pairs`), with its 95% CI, the t-test's p-value, "
             "the Holm-corrected p-value over the comparisons with that baseline, the effect "
             f"size (d_z paired, Hedges' g unpaired), the TOST p-value for equivalence within ±{margin:g} pp and "
             "the verdict (different: Holm p < 0.05; equivalent: TOST p < 0.05; else inconclusive); the smallest "
             "difference these seeds detect with 80% power at the observed SD of the differences, and the seeds "
             f"±{margin:g} pp would need; the mean rank (1 = best) and wins on the seeds every variant completed.",
             "", format_markdown(report.summary), ""]
    lines = primary_lines(report.summary) + report.caveats + report.notes
    parts += [f"- {line}" for line in lines if line not in report.block_notes]
    parts += ["", "## Seed blocks", "", *(f"- {line}" for line in block_lines(report.blocks)),
              f"- {_hardware_note(report.runs, report.hardware)}"]
    parts += ["", "## Every variant against every other (pairs.csv, pairs.png)", "",
              *(f"- {line}" for line in omnibus_lines(report.omnibus)), "",
              format_pairs_markdown(report.pairs, report.summary, margin)]
    if len(report.factorial):
        parts += ["", f"## {' × '.join(report.settings.factorial)} (factorial.csv, factorial.png)", "",
                  *(f"{'  ' if line.startswith('  ') else ''}- {line.strip()}"  # indented: one effect
                    for line in factorial_lines(report.factorial))]
    if len(report.contrast):
        parts += ["", f"## Across {report.contrast['axis'].iloc[0]} (contrast.csv)", "",
                  format_contrast_markdown(report.contrast)]
    if report.tuned is not None:
        parts += ["", f"## Each variant at its own {report.tuned.axis} (tuned.csv)", "",
                  *(f"- {line.strip()}" for line in tuned_lines(report.tuned)), "",
                  format_markdown(report.tuned.summary) if len(report.tuned.summary) else "No confirm block yet."]
    if len(report.curves):
        parts += ["", "## Over training (curves.csv, curve_quarters.csv, curves.png)", "",
                  format_curves_markdown(report.quarters)]
    if calls := describe_calls(read_calls(results_dir)):
        parts += ["", "## How these results were made (calls.jsonl)", "", *(f"- {line}" for line in calls)]
    if report.problems:
        parts += ["", "## Skipped records", "", *(f"- `{p}`" for p in report.problems)]
    return "\n".join(parts) + "\n"


def write_report(results_dir: str | os.PathLike, allow_mixed_environments: bool = False, **overrides) -> Report:
    """`build_report`, then write summary.{csv,md,tex}, pairs.csv, curves.csv, curve_quarters.csv,
    gates{,_mean}.csv, masks.csv and the plots accuracy.png, pairs.png, curves.png, gates.png and masks.png; the
    curves, gates and masks are skipped when no run recorded any.
    A factorial adds factorial.csv and its interaction plot factorial.png, a contrast contrast.csv, a tuned
    comparison tuned.csv."""
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
    if len(report.factorial):
        files["factorial.csv"] = report.factorial.to_csv(index=False)
        files["factorial.png"] = png_bytes(plot_factorial(report.summary, report.settings.factorial))
    if len(report.contrast):
        files["contrast.csv"] = report.contrast.to_csv(index=False)
    if report.tuned is not None:
        files["tuned.csv"] = tuned_table(report.tuned).to_csv(index=False)
    if len(report.curves):
        files["curves.csv"] = report.curves.to_csv(index=False)
        files["curve_quarters.csv"] = report.quarters.to_csv(index=False)
        files["curves.png"] = png_bytes(plot_curves(report.curves))
    if len(report.gates_mean):
        files["gates.png"] = png_bytes(plot_gates(report.gates_mean))
    if len(report.masks):
        files["masks.csv"] = report.masks.to_csv(index=False)
        files["masks.png"] = png_bytes(plot_masks(report.masks_mean))
    with folder_errors(results_dir, "results folder"):  # a full or read-only disk: one line, no traceback
        for name, data in files.items():
            payload = data.encode("utf-8") if isinstance(data, str) else data
            # Atomically (temp file + rename): a grid can rewrite its report while someone reads it, and a
            # write that fails leaves the file as it was.
            report.written.append(atomic_write(results_dir / name, lambda tmp, b=payload: tmp.write_bytes(b)))
    return report

"""Read a results directory once: which runs form the table, and what was skipped or left out.

A results directory holds `runs/<run_id>/record.json` (one per training run) and, when a grid wrote
it, `grid.json` with the grid's axes, run ids and seed blocks. Which runs belong to the table:
- with `grid.json`: the runs it lists (a rerun grid with a changed base lists new ids, so the
  old runs left in `runs/` are not averaged in);
- without: every run in `runs/`;
and of those, the runs of the counted seed blocks only (`seed_blocks.py`): a table pairs variants within whole
blocks. Either way the runs must form one experiment (`mixing.py` refuses anything else with a one-line
`UserError`); `runs.py` makes their frame. A record that cannot be trusted (corrupt, wrong types:
`validate.py`) is reported by path and skipped, so one broken run never hides the rest.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..run.record import trained_elsewhere
from ..run.ledger import Ledger, read_ledger
from .seed_blocks import in_counted_blocks, seed_blocks
from .mixing import check_one_experiment, check_same_data, environment_differences, fingerprint_notes
from .runs import runs_frame
from .validate import BadRecord, read_checked


# ---------------------------------------------------------------- which runs: grid.json


def _grid_spec(results_dir: Path, problems: list[str]) -> Ledger:
    """What grid.json says (`ledger.read_ledger`): the axes with their values in the grid's order, the run ids
    it lists (None: read every run in runs/), its `report:` section and its seed blocks. One that cannot be
    trusted is a problem, and the report reads every run in runs/ with the records' axes."""
    try:
        return read_ledger(results_dir)
    except UserError as err:
        problems.append(f"{err}; reading every run in runs/")
        return Ledger()


def _run_dirs(results_dir: Path, listed: list[str] | None, notes: list[str]) -> list[Path]:
    present = sorted(p for p in (results_dir / "runs").glob("*") if p.is_dir())
    if listed is None:
        return present
    left_out = [p for p in present if p.name not in set(listed)]
    if left_out:
        notes.append(f"{len(left_out)} run folder(s) in runs/ are not in grid.json (an earlier configuration "
                     f"of the grid) and are left out, e.g. {left_out[0].name}")
    return [results_dir / "runs" / run_id for run_id in listed]


class NoCompleteBlock(UserError):
    """Nothing to pair yet: a grid stopped before any seed block ended (its call reports it as a note)."""


@dataclass
class Loaded:
    """A results dir read once: the checked records of the counted seed blocks and their runs table, every seed
    block (`blocks.seed_blocks`), and what was skipped or left out."""

    records: list[dict]
    runs: pd.DataFrame
    problems: list[str] = field(default_factory=list)  # records that could not be used
    notes: list[str] = field(default_factory=list)  # runs deliberately left out, data taken as the same
    grid: Ledger = field(default_factory=Ledger)
    blocks: pd.DataFrame = field(default_factory=pd.DataFrame)  # every seed block, counted or not


def load(results_dir: str | os.PathLike, allow_mixed_environments: bool = False) -> Loaded:
    """Read the runs of a results dir once; shared by every public entry point.

    Raises UserError when the dir is missing, holds no usable record or no counted seed block, mixes
    experiments or datasets, or (unless allowed) environments.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory {results_dir} does not exist")
    problems, notes = [], []
    grid = _grid_spec(results_dir, problems)
    records, seen, pending, running = [], set(), [], {}
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
            if rec["status"] == "running":
                running[rec["id"]] = run_dir
    if not records:
        raise UserError(f"no readable runs/*/record.json in results directory {results_dir}"
                        + (f" ({len(problems)} skipped: {problems[0]})" if problems else ""))
    notes += unfinished_notes(running, pending)
    runs = runs_frame(records, grid.axes)
    check_one_experiment(records, runs, results_dir)
    check_same_data(records, runs, results_dir)
    if (mixed := environment_differences(runs)) and not allow_mixed_environments:
        raise UserError(f"{results_dir}: runs differ in {mixed}; a table never mixes device types, precisions or "
                        f"compile settings, nor hardware within a seed block: keep each in its own results folder, "
                        f"or pass --allow-mixed-environments to compare them anyway")
    notes += fingerprint_notes(records, runs)
    blocks = seed_blocks(runs, grid, pending)
    counted = in_counted_blocks(runs, blocks)
    if not counted.any():
        raise NoCompleteBlock(f"{results_dir}: no complete seed block yet ({_ended(blocks)}): a table pairs its "
                              f"variants within blocks whose every run has ended; rerun the grid command to finish one")
    return Loaded([rec for rec, keep in zip(records, counted) if keep], runs[counted].reset_index(drop=True),
                  problems, notes, grid, blocks)


def unfinished_notes(running: dict[str, Path], pending: list[str]) -> list[str]:
    """What is left of a grid (not counted): of its `running` records (id -> run folder), those another call
    is training now, named by who trains them, and those stopped mid-training; with runs not started (`pending`),
    these the same grid command finishes."""
    elsewhere = {run_id: who for run_id, run_dir in running.items() if (who := trained_elsewhere(run_dir))}
    stopped = len(running) - len(elsewhere)
    notes = [f"being trained by another call (not counted): {run_id} ({who})" for run_id, who in elsewhere.items()]
    if pending or stopped:  # a grid stopped part-way: the same grid command finishes it
        notes.append(f"unfinished: {len(pending)} run(s) not started, {stopped} stopped mid-training "
                     f"(not counted); rerun the grid command to finish them")
    return notes


def _ended(blocks: pd.DataFrame, most: int = 3) -> str:
    """`seed 0: 2 of 3 runs ended; ...` for the first `most` blocks."""
    shown = [f"seed {b.seed}: {b.ended} of {b.total} runs ended" for b in blocks[:most].itertuples()]
    return "; ".join(shown + (["..."] if len(blocks) > most else []))


def load_records(results_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """One row per run the tables read (the runs of the counted seed blocks), and a `path: reason` line per
    record that was skipped.

    Columns: id, status, error, failed_epoch, one column per axis named by its dotted key, seed,
    the metrics (accuracies as fractions), final_epoch (the last epoch trained, counted from 0), test_on,
    code, the environment (device type, hardware kind, precision, compile; None without one), ended
    (`record.run_ended`), data_fingerprint, a readable `variant` label and its `order`. Axis columns are
    exactly the dotted-key columns: that is how `summarize` tells axes from metrics.
    """
    loaded = load(results_dir)
    return loaded.runs, loaded.problems

"""Each variant at its own value of one axis (its own learning rate), chosen on some seed blocks and confirmed on
the others.

A learning rate shared by every variant was chosen for one of them (lr 0.1, the plain block's), and a placement
that loses there may only be mistuned. `report.tune: optim.lr` with `report.choose_on: [0, 1, 2]` asks:
    choose:  for each variant v (its label without the axis) and each value x of the axis,
             score(v, x) = mean validation accuracy of v @ x over the choose blocks; x is eligible only when v @ x
             completed on every choose block (a run that diverged disqualifies its value);
             x*(v) = argmax score, ties (within rounding) to the smaller value: the more cautious step;
             edge: x*(v) is the smallest or largest value the grid ran, so the best may lie outside the grid.
    confirm: on the other counted blocks only, each variant at x*(v) against the baseline at its own x*, on test
             accuracy, paired by seed: the report's summary (`summary.summarize`: CIs, Holm, TOST, verdicts).
Choosing and confirming on the same blocks would inflate the winners (the winner's curse), most for the variants
whose accuracy varies most. Pure pandas on the runs frame; formatting is in tables.py.
"""

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from ..errors import UserError
from ..run.report_settings import ReportSettings
from . import stats
from .runs import labels_across, value_text
from .summary import summarize

CHOOSE_METRIC = "val_acc"  # exploring: the validation split
CONFIRM_METRIC = "test_acc"  # confirming: the test split, on other blocks


@dataclass(frozen=True)
class Tuned:
    """The choices (one row per variant: `variant`, `chosen`, `chosen_val_mean`, `edge`, `values`), the confirm
    runs (each variant at its choice, the axis left out of its label) and their summary; `choose_on` and
    `confirm_on` are seed blocks."""

    axis: str
    choose_on: tuple[int, ...]
    confirm_on: tuple[int, ...]
    choices: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame


def tune(runs: pd.DataFrame, settings: ReportSettings) -> Tuned | None:
    """The tuned comparison the settings ask for (`settings.tune`), or None."""
    if settings.tune is None:
        return None
    axis, choose_on = settings.tune, tuple(settings.choose_on)
    runs = runs.assign(variant=labels_across(runs, axis, "report.tune"))
    _check_blocks(choose_on, runs)
    choices = _choose(runs[runs["seed"].isin(choose_on)], axis, sorted(set(runs[axis].dropna())))
    confirm_on = tuple(sorted(set(runs["seed"]) - set(choose_on)))
    chosen = runs["variant"].map(choices.set_index("variant")["chosen"])
    confirm = runs[runs["seed"].isin(confirm_on) & runs[axis].eq(chosen)].drop(columns=axis)
    confirm = confirm.assign(order=confirm.groupby("variant")["order"].transform("min")).reset_index(drop=True)
    summary = (summarize(confirm, dataclasses.replace(settings, metric=CONFIRM_METRIC)) if len(confirm)
               else pd.DataFrame())
    return Tuned(axis, choose_on, confirm_on, choices, confirm, summary)


def tuned_table(tuned: Tuned) -> pd.DataFrame:
    """The rows of tuned.csv: each variant's choice beside its confirmed summary row (blank before a confirm
    block), with the blocks it was chosen and confirmed on."""
    table = tuned.choices.merge(tuned.summary, on="variant", how="left") if len(tuned.summary) else tuned.choices
    return table.assign(axis=tuned.axis, choose_on=" ".join(map(str, tuned.choose_on)),
                        confirm_on=" ".join(map(str, tuned.confirm_on)))


def _choose(runs: pd.DataFrame, axis: str, values: list) -> pd.DataFrame:
    """Per variant, in the report's order: the value with the best mean validation accuracy over the choose
    blocks among the values it completed on every one of them; ties to the smaller value."""
    blocks = runs["seed"].nunique()
    rows = []
    for variant, own in runs.sort_values("order", kind="stable").groupby("variant", sort=False):
        done = own[own["status"].eq("completed") & own[CHOOSE_METRIC].notna()]
        scores = done.groupby(axis)[CHOOSE_METRIC].agg(["mean", "count"])
        scores = scores.loc[scores["count"].eq(blocks), "mean"]
        if scores.empty:
            rows.append({"variant": variant, "chosen": math.nan, "chosen_val_mean": math.nan, "edge": False,
                         "scores": ""})
            continue
        tied = scores[scores >= scores.max() - stats.ROUNDING]
        chosen = min(tied.index)
        rows.append({"variant": variant, "chosen": chosen, "chosen_val_mean": scores[chosen],
                     "edge": len(values) > 1 and chosen in (values[0], values[-1]),
                     "scores": ", ".join(f"{value_text(x)}: {100 * s:.2f}" for x, s in scores.items())})
    return pd.DataFrame(rows, columns=["variant", "chosen", "chosen_val_mean", "edge", "scores"])


def _check_blocks(choose_on: tuple[int, ...], runs: pd.DataFrame) -> None:
    """The choose blocks are counted blocks, and their runs recorded validation accuracy."""
    seeds = sorted(set(runs["seed"]))
    if missing := [s for s in choose_on if s not in seeds]:
        raise UserError(f"report.choose_on: seed {', '.join(map(str, missing))} is no counted seed block of this "
                        f"report; valid: {', '.join(map(str, seeds))}")
    chosen_from = runs[runs["seed"].isin(choose_on) & runs["status"].eq("completed")]
    if chosen_from[CHOOSE_METRIC].isna().all():
        raise UserError(f"report.tune chooses on {CHOOSE_METRIC}, which no completed run of seed blocks "
                        f"{', '.join(map(str, choose_on))} recorded; valid: runs trained with data.val_size > 0")

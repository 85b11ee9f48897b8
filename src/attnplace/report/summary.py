"""The statistics frames of one experiment, pure pandas on the runs frame: per variant, every pair, per group.

Apart from the files (`build.py`) and the formulas (`stats.py`, `anova.py`): `summarize`, `pairs`,
`omnibus` and `factorial` only shape one frame, variant × seed → the report's metric (`accuracies`), cut into
groups, the variants that share every non-placement axis and so are compared with each other and with their baseline
(`groups`), and hand each group to `stats` or `anova`.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from ..errors import UserError
from ..run.report_settings import ReportSettings
from . import anova, stats
from .runs import BASELINE, PATTERN, PLACEMENT, axis_columns, label, placement_label, variant_keys

COSTS = ("params", "flops", "train_images_per_s")
EPOCH_OF = {"test_acc": "tested_epoch", "val_acc": "final_epoch"}  # the epoch whose weights a metric reads
SUMMARY_COLUMNS = ["variant", "group", "baseline", "primary", "n", "acc_mean", "acc_std", "ci_low", "ci_high",
                   "failures", "metric", "epoch", "equivalence_margin", *stats.COMPARISON_COLUMNS, "mean_rank", "wins",
                   "baseline_acc_mean", "test_on", "acc5_mean", *COSTS]


# ---------------------------------------------------------------- the frame: variants × seeds, in groups


def variant_table(runs: pd.DataFrame, baseline: str | None = None, primary: str | None = None) -> pd.DataFrame:
    """One row per variant, in report order: its axis values (placement axes blank on `none`), `variant`,
    `group` (the label of its non-placement axes; "" for a one-group experiment), `baseline` and `primary`.

    The baseline of a group is its `model.pattern == none` variant, or the variant that `baseline` names by
    its label or by its placement part (`p1/se`: the p1/se variant of every group). It comes first in its
    group; the rest keep the grid's order of axis values. `primary` names the primary contrast's variant(s)
    the same way. A name that is no variant (or a primary that is a baseline) is a UserError.
    """
    first = runs.sort_values("order", kind="stable").drop_duplicates("variant")
    axes = axis_columns(runs)
    keys = variant_keys(first)
    group_axes = [a for a in axes if a not in PLACEMENT]
    table = pd.DataFrame(keys, columns=axes, dtype=object)
    table["variant"] = first["variant"].to_numpy()
    table["group"] = [label(tuple(v for a, v in zip(axes, k) if a not in PLACEMENT), group_axes) for k in keys]
    placements = pd.Series([placement_label(k, axes) for k in keys])

    def named(name: str, key: str) -> pd.Series:
        chosen = table["variant"].eq(name) | placements.eq(name)
        if not chosen.any():
            raise UserError(f"{key} {name!r} is not a variant of this report; valid: {', '.join(table['variant'])}")
        return chosen

    table["baseline"] = table[PATTERN].eq(BASELINE) if baseline is None else named(baseline, "baseline")
    table["primary"] = False if primary is None else named(primary, "primary")
    if (table["primary"] & table["baseline"]).any():
        raise UserError(f"primary {primary!r} is the baseline; valid: a variant compared with it, "
                        f"{', '.join(table.loc[~table['baseline'], 'variant'])}")
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
    variants = variant_table(runs, settings.baseline, settings.primary)
    acc = accuracies(runs, settings.metric, variants["variant"])
    return [Group(name, rows, acc.loc[rows["variant"]], next(iter(rows.loc[rows["baseline"], "variant"]), None))
            for name, rows in variants.groupby("group", sort=False)]


# ---------------------------------------------------------------- statistics of the frame


def summarize(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant, in report order (group by group, baseline first).

    Columns: the axis columns, variant, group, baseline, primary (the contrast named in advance); n (completed runs),
    acc_mean, acc_std, ci_low, ci_high of `settings.metric`; failures, metric, epoch (the epoch(s) whose weights it
    read, counted from 0), equivalence_margin (pp); against the group's baseline (`stats.against`): diff (the mean
    paired difference over the shared seeds, or the difference of means when unpaired), diff_ci_low, diff_ci_high,
    n_pairs, p_value, p_holm (Holm over the variants compared with one baseline), effect and effect_kind (d_z paired, g
    for Hedges' g when Welch), test ("paired", "welch" or ""), tost_p, verdict, detectable_diff (80% power at the
    observed SD), seeds_for_margin; mean_rank and wins over the seeds every variant of the group completed;
    baseline_acc_mean, test_on, acc5_mean when test_acc5 exists, params, flops, train_images_per_s.
    """
    margin = settings.equivalence_margin / 100
    parts = []
    for group in groups(runs, settings):
        described = pd.DataFrame([stats.describe(row.dropna()) for _, row in group.acc.iterrows()],
                                 index=group.acc.index)
        compared = stats.against(group.acc, group.baseline, margin)
        parts.append(pd.concat([group.variants.set_index("variant"), described, compared, anova.ranks(group.acc)],
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
    """One row per group, and one per value of each `settings.within` axis in it (`within`: `axis=value`):
    do any of its variants differ (`anova.omnibus`: Friedman, RM-ANOVA)?"""
    return pd.DataFrame([{"group": group.name, "within": within, "metric": settings.metric, **anova.omnibus(acc)}
                         for group in groups(runs, settings)
                         for within, acc in [("", group.acc), *slices(group, settings.within)]])


def factorial(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """Per group, the factorial repeated-measures ANOVA of its variants other than the baseline over the
    `settings.factorial` axes (`anova.factorial`): one row per main effect and interaction, with the group,
    metric and the variants left outside the crossing cells (`left_out`) named. Empty when no factorial was
    asked for."""
    if not settings.factorial:
        return pd.DataFrame()
    frames = []
    for group in groups(runs, settings):
        acc, left_out = _cells(group, settings.factorial)
        frames.append(anova.factorial(acc, settings.factorial)
                      .assign(group=group.name, metric=settings.metric, left_out=", ".join(left_out)))
    frame = pd.concat(frames, ignore_index=True)
    return frame[["group", *frame.columns.drop("group")]]


def _cells(group: Group, factors: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    """The accuracies of the group's non-baseline variants indexed by their values of `factors`, on the cells
    that cross (`crossing`: a gate form run on one pattern only, p3 × mix, stays outside), and the variants left
    outside. Values that do not cross at all are a UserError that says why."""
    _check_placement_axes(group, factors, "report.factorial")
    # The plain block (a non-`none` baseline leaves it among the others) has no gate: it is in no cell.
    others = group.variants[~group.variants["baseline"] & group.variants[list(factors)].notna().all(axis=1)]
    keys = pd.MultiIndex.from_frame(others[list(factors)].astype(str))
    if keys.has_duplicates:
        twice = others.loc[keys.duplicated(keep=False), "variant"]
        raise UserError(f"report.factorial: {', '.join(twice)} share their {' × '.join(factors)} values; "
                        f"valid: the placement axes whose values tell every variant apart")
    kept = crossing(keys)
    if any(len(set(kept.get_level_values(i))) < 2 for i in range(len(factors))):
        missing = _product(keys).difference(keys)
        raise UserError(f"report.factorial: {' × '.join(factors)} do not cross in this grid: no variant has "
                        f"{'; '.join('/'.join(m) for m in missing)}; valid: axes whose every combination was run")
    inside = keys.isin(kept)
    variants = group.variants
    outside = variants.loc[~variants["baseline"] & ~variants["variant"].isin(others["variant"][inside]), "variant"]
    return group.acc.loc[others["variant"][inside]].set_axis(keys[inside]), list(outside)


def crossing(keys: pd.MultiIndex) -> pd.MultiIndex:
    """The part of `keys` whose values cross: the factor value with the most combinations missing is dropped,
    one at a time, until every combination of the values left is there."""
    while len(missing := _product(keys).difference(keys)):
        worst = Counter((i, m[i]) for m in missing for i in range(keys.nlevels)).most_common(1)[0][0]
        keys = keys[keys.get_level_values(worst[0]) != worst[1]]
    return keys


def _product(keys: pd.MultiIndex) -> pd.MultiIndex:
    return pd.MultiIndex.from_product([list(dict.fromkeys(keys.get_level_values(i))) for i in range(keys.nlevels)])


def _check_placement_axes(group: Group, axes: Iterable[str], key: str) -> None:
    present = [a for a in group.variants.columns if a in PLACEMENT]
    for axis in axes:
        if axis not in present:
            raise UserError(f"{key}: {axis!r} is not a placement axis of this report; "
                            f"valid: {', '.join(present) or 'none (its grid has no placement axis)'}")


def slices(group: Group, axes: Iterable[str]) -> list[tuple[str, pd.DataFrame]]:
    """Per value of each of `axes` (placement axes) among the group's variants: `axis=value` and the
    accuracies of the variants with that value, the group's baseline first. A name that is no placement
    axis of the report is a UserError."""
    _check_placement_axes(group, axes, "report.within")
    out = []
    for axis in axes:
        others = group.variants[~group.variants["baseline"]]
        for value in others[axis].dropna().unique():
            names = [*([group.baseline] if group.baseline else []), *others.loc[others[axis].eq(value), "variant"]]
            out.append((f"{axis}={value}", group.acc.loc[names]))
    return out

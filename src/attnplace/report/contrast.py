"""A paired contrast across groups: two values of one non-placement axis, variant by variant, paired by seed.

A report compares the variants of one group, which share every non-placement axis (runs.py), so lr 0.1 and
lr 0.2, or BatchNorm and GroupNorm, are never compared there. `report.contrast: AXIS=BEFORE,AFTER` asks
across them, in two families:
    change:  Δ_v = acc(v @ AFTER) − acc(v @ BEFORE), per variant v present at both values;
    gap:     (acc(v @ AFTER) − acc(base @ AFTER)) − (acc(v @ BEFORE) − acc(base @ BEFORE)), per non-baseline v,
             base its group's baseline: does changing the axis move the placement's gain or loss?
Every Δ is a paired comparison on the seeds both sides completed (`stats.compare`), with Holm over its family and
TOST at the report's margin, like every other comparison. Pure pandas on the runs frame; formatting is in
contrast_tables.py.
"""

import pandas as pd

from ..errors import UserError
from ..run.report_settings import ReportSettings
from . import stats
from .runs import labels_across, value_text
from .summary import accuracies, variant_table

COLUMNS = ["family", "variant", "after", "before", *stats.COMPARISON_COLUMNS]


def contrast(runs: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """The two families as one frame (`COLUMNS`, then the axis, both values as labels write them, the metric
    and the margin), changes first; empty when the settings ask for no contrast."""
    if settings.contrast is None:
        return pd.DataFrame(columns=COLUMNS)
    axis, before, after = settings.contrast_values()
    variants = variant_table(runs, settings.baseline)
    variants = variants.assign(across=labels_across(variants, axis, "report.contrast"),
                               value=variants[axis].map(value_text))
    _check_values(axis, (before, after), variants)
    acc = accuracies(runs, settings.metric, variants["variant"])
    at = {value: {row["across"]: row for _, row in variants[variants["value"].eq(value_text(value))].iterrows()}
          for value in (before, after)}
    baseline_of = variants[variants["baseline"]].set_index("group")["variant"]
    across = variants.set_index("variant")["across"]

    def gap(row: pd.Series) -> pd.Series:  # seed -> the variant's difference to its group's baseline
        return acc.loc[row["variant"]] - acc.loc[baseline_of[row["group"]]]

    families = {"change": [], "gap": []}
    for name in [name for name in at[after] if name in at[before]]:  # the report's order
        a, b = at[after][name], at[before][name]
        families["change"].append((name, a, b, stats.compare(acc.loc[a["variant"]], acc.loc[b["variant"]])))
        if not a["baseline"] and a["group"] in baseline_of and b["group"] in baseline_of:
            base = across[baseline_of[a["group"]]]
            families["gap"].append((f"{name} − {base}", a, b, stats.compare(gap(a), gap(b))))
    margin = settings.equivalence_margin / 100
    frames = [stats.family([c for *_, c in rows], margin)
              .assign(family=name, variant=[n for n, *_ in rows], after=[a["variant"] for _, a, _, _ in rows],
                      before=[b["variant"] for _, _, b, _ in rows])
              for name, rows in families.items() if rows]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return frame[COLUMNS].assign(axis=axis, before_value=value_text(before), after_value=value_text(after),
                                 metric=settings.metric, equivalence_margin=settings.equivalence_margin)


def _check_values(axis: str, values: tuple, variants: pd.DataFrame) -> None:
    """Both values occur, compared as a grid file writes them (`value`: 0.1, False, `32-true`, `[2, 3]`)."""
    present = list(dict.fromkeys(variants.loc[variants[axis].notna(), "value"]))
    for value in values:
        if value_text(value) not in present:
            raise UserError(f"report.contrast: {axis} has no value {value!r} in this report; "
                            f"valid: {', '.join(present)}")

"""Two studies, cell by cell: does a variant's gain or loss against the plain block change from one to the other?

Two studies share no pairs (other machines, precisions, depths or training lengths), so a variant is never
compared across them directly. Within each, its Δ against that study's own baseline is paired by seed block;
across them, the two sets of per-block Δs are compared by Welch's t (their spreads need not agree):

    Δ_A = mean over A's blocks of (variant − baseline),   Δ_B likewise,   Δ_B − Δ_A  with Welch's 95% CI.

Both studies must hold one group each. Their rows are matched by variant label (`p2/gate=mask/se`), so both must
name their variants alike, or by where × how cell (`p2 × mask`, the atlas's columns), which matches two studies of
different attention types (SE against CBAM). Pure: two reports in, a frame out; `format_across` makes it Markdown.
"""

import pandas as pd

from ..errors import UserError
from . import stats
from .atlas import cells_of
from .runs import BASELINE, PATTERN
from .summary import Group, groups
from .tables import _p, _pp

MATCH = ("variant", "cell")  # what pairs a row of study A with one of study B; the first is the default
ACROSS_COLUMNS = ["n_a", "diff_a", "diff_a_low", "diff_a_high", "n_b", "diff_b", "diff_b_low",
                  "diff_b_high", "diff", "diff_low", "diff_high", "p_value", "p_holm"]


def across_studies(a, b, match: str | None = None) -> pd.DataFrame:
    """One row per variant label, or per where × how cell (`match`, the first column's name), that both reports
    hold, apart from the baseline, in A's order (fractions; p's Holm over the rows)."""
    match = match or MATCH[0]
    if match not in MATCH:
        raise UserError(f"--match {match}: valid: {', '.join(MATCH)}")
    if a.settings.metric != b.settings.metric:  # each study's grid.json names its own
        raise UserError(f"study A reads {a.settings.metric}, study B {b.settings.metric}: a Δ on validation and one "
                        f"on test are not one quantity; pass --metric test_acc or --metric val_acc")
    group_a, group_b = _only_group(a, "A"), _only_group(b, "B")
    if _baseline(group_a) != _baseline(group_b):
        raise UserError(f"study A's Δs are against {_baseline(group_a)}, study B's against {_baseline(group_b)}: "
                        f"pass --baseline VARIANT to compare both with one variant")
    deltas_a, deltas_b = _keyed(a, "A", group_a, match), _keyed(b, "B", group_b, match)
    shared = [key for key in deltas_a.index if key in deltas_b.index]
    if not shared:
        hint = "; --match cell pairs them by where × how cell" if match == "variant" else ""
        raise UserError(f"the studies share no {match} besides the baseline: A has {', '.join(deltas_a.index)}; "
                        f"B has {', '.join(deltas_b.index)}{hint}")
    rows = []
    for key in shared:
        da, db = deltas_a.loc[key].dropna(), deltas_b.loc[key].dropna()
        within_a, within_b = _mean_ci(da), _mean_ci(db)
        between = stats.welch(db, da)
        rows.append({match: key, "n_a": len(da), **_named(within_a, "diff_a"), "n_b": len(db),
                     **_named(within_b, "diff_b"), "diff": between.diff, "diff_low": between.ci[0],
                     "diff_high": between.ci[1], "p_value": between.p_value})
    frame = pd.DataFrame(rows, columns=[match, *ACROSS_COLUMNS[:-1]])
    frame["p_holm"] = stats.holm(frame["p_value"])
    return frame


def _keyed(report, name: str, group: Group, match: str) -> pd.DataFrame:
    """The study's Δs (`_deltas`) indexed by `match`: the variant label, or its where × how cell (a variant that
    is no cell is dropped; two variants in one cell are refused, since a row never averages two)."""
    deltas = _deltas(group)
    if match == "variant":
        return deltas
    cells = cells_of(report)
    keyed = deltas.loc[[v for v in deltas.index if v in cells]].rename(index=cells)
    if keyed.index.has_duplicates:
        cell = keyed.index[keyed.index.duplicated()][0]
        raise UserError(f"study {name} has several variants in the cell {cell}: "
                        f"{', '.join(v for v in deltas.index if cells.get(v) == cell)}; --match cell needs one "
                        f"variant per cell")
    return keyed


def _only_group(report, name: str) -> Group:
    found = [g for g in groups(report.runs, report.settings) if g.baseline is not None]
    if len(found) != 1:
        raise UserError(f"study {name} has {len(found)} groups with a baseline; a cell-by-cell comparison needs "
                        f"exactly one in each study")
    return found[0]


def _baseline(group: Group) -> str:
    """What the group's Δs are against: the `none` pattern (whatever its label), else the baseline variant."""
    row = group.variants.set_index("variant").loc[group.baseline]
    return "the `none` pattern" if row[PATTERN] == BASELINE else group.baseline


def _deltas(group: Group) -> pd.DataFrame:
    """variant × seed block → Δ against the group's baseline, the baseline's own row dropped."""
    return (group.acc - group.acc.loc[group.baseline]).drop(index=group.baseline)


def _mean_ci(deltas: pd.Series) -> tuple[float, float, float]:
    c = stats.paired(deltas, [0.0] * len(deltas)) if len(deltas) >= 2 else stats.Comparison(diff=deltas.mean())
    return (c.diff, *c.ci)


def _named(values: tuple[float, float, float], prefix: str) -> dict:
    return dict(zip((prefix, f"{prefix}_low", f"{prefix}_high"), values))


def format_across(frame: pd.DataFrame, name_a: str, name_b: str) -> str:
    """Markdown: Δ in percentage points with their 95% CIs; the first column is what paired the rows."""
    def interval(low, high) -> str:
        return f"[{_pp(low)}, {_pp(high)}]" if pd.notna(low) else ""

    header = [frame.columns[0], f"Δ {name_a} [95% CI] (n)", f"Δ {name_b} [95% CI] (n)",
              f"{name_b} − {name_a} [Welch 95% CI]", "p", "p Holm"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for key, r in zip(frame.iloc[:, 0], frame.itertuples(index=False)):
        lines.append(f"| {key} | {_pp(r.diff_a)} {interval(r.diff_a_low, r.diff_a_high)} ({r.n_a}) "
                     f"| {_pp(r.diff_b)} {interval(r.diff_b_low, r.diff_b_high)} ({r.n_b}) "
                     f"| {_pp(r.diff)} {interval(r.diff_low, r.diff_high)} | {_p(r.p_value)} | {_p(r.p_holm)} |")
    return "\n".join(lines)

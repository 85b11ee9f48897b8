"""Two studies, cell by cell: does a variant's gain or loss against the plain block change from one to the other?

Two studies share no pairs (other machines, precisions, depths or training lengths), so a variant is never
compared across them directly. Within each, its Δ against that study's own baseline is paired by seed block;
across them, the two sets of per-block Δs are compared by Welch's t (their spreads need not agree):

    Δ_A = mean over A's blocks of (variant − baseline),   Δ_B likewise,   Δ_B − Δ_A  with Welch's 95% CI.

Cells are matched by variant label (`p2/gate=mask/se`), so both studies must name their variants alike and hold
one group each. Pure: two reports in, a frame out; `format_across` makes it Markdown.
"""

import pandas as pd

from ..errors import UserError
from . import stats
from .summary import Group, groups
from .tables import _p, _pp

ACROSS_COLUMNS = ["variant", "n_a", "diff_a", "diff_a_low", "diff_a_high", "n_b", "diff_b", "diff_b_low",
                  "diff_b_high", "diff", "diff_low", "diff_high", "p_value", "p_holm"]


def across_studies(a, b) -> pd.DataFrame:
    """One row per variant that both reports hold, apart from the baseline, in A's order (fractions; p's Holm
    over the rows)."""
    group_a, group_b = _only_group(a, "A"), _only_group(b, "B")
    deltas_a, deltas_b = _deltas(group_a), _deltas(group_b)
    rows = []
    for variant in [v for v in deltas_a.index if v in deltas_b.index]:
        da, db = deltas_a.loc[variant].dropna(), deltas_b.loc[variant].dropna()
        within_a, within_b = _mean_ci(da), _mean_ci(db)
        between = stats.welch(db, da)
        rows.append({"variant": variant, "n_a": len(da), **_named(within_a, "diff_a"), "n_b": len(db),
                     **_named(within_b, "diff_b"), "diff": between.diff, "diff_low": between.ci[0],
                     "diff_high": between.ci[1], "p_value": between.p_value})
    frame = pd.DataFrame(rows, columns=ACROSS_COLUMNS[:-1])
    frame["p_holm"] = stats.holm(frame["p_value"])
    return frame


def _only_group(report, name: str) -> Group:
    found = [g for g in groups(report.runs, report.settings) if g.baseline is not None]
    if len(found) != 1:
        raise UserError(f"study {name} has {len(found)} groups with a baseline; a cell-by-cell comparison needs "
                        f"exactly one in each study")
    return found[0]


def _deltas(group: Group) -> pd.DataFrame:
    """variant × seed block → Δ against the group's baseline, the baseline's own row dropped."""
    return (group.acc - group.acc.loc[group.baseline]).drop(index=group.baseline)


def _mean_ci(deltas: pd.Series) -> tuple[float, float, float]:
    c = stats.paired(deltas, [0.0] * len(deltas)) if len(deltas) >= 2 else stats.Comparison(diff=deltas.mean())
    return (c.diff, *c.ci)


def _named(values: tuple[float, float, float], prefix: str) -> dict:
    return dict(zip((prefix, f"{prefix}_low", f"{prefix}_high"), values))


def format_across(frame: pd.DataFrame, name_a: str, name_b: str) -> str:
    """Markdown: Δ in percentage points with their 95% CIs."""
    def interval(low, high) -> str:
        return f"[{_pp(low)}, {_pp(high)}]" if pd.notna(low) else ""

    header = ["variant", f"Δ {name_a} [95% CI] (n)", f"Δ {name_b} [95% CI] (n)",
              f"{name_b} − {name_a} [Welch 95% CI]", "p", "p Holm"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for r in frame.itertuples(index=False):
        lines.append(f"| {r.variant} | {_pp(r.diff_a)} {interval(r.diff_a_low, r.diff_a_high)} ({r.n_a}) "
                     f"| {_pp(r.diff_b)} {interval(r.diff_b_low, r.diff_b_high)} ({r.n_b}) "
                     f"| {_pp(r.diff)} {interval(r.diff_low, r.diff_high)} | {_p(r.p_value)} | {_p(r.p_holm)} |")
    return "\n".join(lines)

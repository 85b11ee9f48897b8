"""The summary as tables for people: terminal, GitHub markdown and LaTeX, the all-pairs matrix and the
omnibus tests and the gaps over training as markdown, the seed blocks and the hardware × variant test as lines.
Formatting only, no statistics.

Accuracies are shown in %, differences in percentage points. A confidence interval of an accuracy is
clipped to [0, 100] %: the t interval is symmetric and, with few seeds, can pass the bounds an accuracy
cannot. Differences are not clipped. Every table names its metric.
"""

import pandas as pd

from .runs import isna, value_text

METRIC_NAMES = {"test_acc": "test acc", "val_acc": "val acc"}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def _si(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{suffix}"
    return f"{x:.0f}"


def _p(p: float) -> str:
    return "" if isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """`p = 0.003` or `p < 0.001`, for sentences."""
    return "p < 0.001" if p < 0.001 else f"p = {_p(p)}"


def _cells(fn, values) -> list[str]:
    """Format each value, leaving missing ones empty."""
    return ["" if isna(x) else fn(x) for x in values]


def _interval(fn, lows, highs, clip: bool = False) -> list[str]:
    if clip:
        lows, highs = lows.clip(0, 1), highs.clip(0, 1)
    return [f"[{lo}, {hi}]" if lo else "" for lo, hi in zip(_cells(fn, lows), _cells(fn, highs))]


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings: one row per variant, the comparison columns blank on baselines."""
    base = summary["baseline"].to_numpy(dtype=bool)

    def unless_base(cells):
        return ["" if b else c for b, c in zip(base, cells)]

    std = _cells(lambda s: f" ± {_pct(s)}", summary["acc_std"])
    effect = ["" if isna(e) else f"{kind} {e:+.2f}" for kind, e in zip(summary["effect_kind"], summary["effect"])]
    table = pd.DataFrame({
        "variant": [f"{v} (primary)" if p else v for v, p in zip(summary["variant"], summary["primary"])],
        "n": summary["n"].astype(str),
        "failed": summary["failures"].astype(str),
        f"{metric_name(summary)} %": [m + s for m, s in zip(_cells(_pct, summary["acc_mean"]), std)],
        "95% CI": _interval(_pct, summary["ci_low"], summary["ci_high"], clip=True),
        "epoch": summary["epoch"],
        "Δ vs base": ["baseline" if b else d for b, d in zip(base, _cells(_pp, summary["diff"]))],
        "Δ 95% CI": unless_base(_interval(_pp, summary["diff_ci_low"], summary["diff_ci_high"])),
        "pairs": unless_base(summary["n_pairs"].astype(str)),
        "p": [_p(p) + (f" ({t})" if t else "") for p, t in zip(summary["p_value"], summary["test"])],
        "p Holm": _cells(_p, summary["p_holm"]),
        "effect": effect,
        "TOST p": _cells(_p, summary["tost_p"]),
        "verdict": summary["verdict"],
        "detectable Δ (80%)": _cells(_pct, summary["detectable_diff"]),
        "seeds for ±m": _cells(lambda k: f"{k:.0f}", summary["seeds_for_margin"]),
        "mean rank": _cells(lambda r: f"{r:.2f}", summary["mean_rank"]),
        "wins": _cells(lambda w: f"{round(w, 2):g}", summary["wins"]),
    })
    if "acc5_mean" in summary:
        table["top-5 %"] = _cells(_pct, summary["acc5_mean"])
    table["params"] = _cells(_si, summary["params"])
    table["FLOPs"] = _cells(_si, summary["flops"])
    table["img/s"] = _cells(lambda v: f"{v:,.0f}", summary["train_images_per_s"])
    return table


TERMINAL_WIDTH = 120  # the default terminal table fits; `--wide` and the files have every column


def terminal_table(summary: pd.DataFrame) -> pd.DataFrame:
    """What a reader needs first: variant, n, accuracy ± sd, Δ [CI], Holm p, verdict and mean rank."""
    full = display_table(summary)
    accuracy = f"{metric_name(summary)} %"
    return pd.DataFrame({
        "variant": full["variant"], "n": full["n"], accuracy: full[accuracy],
        "Δ [95% CI]": [f"{d} {ci}".strip() for d, ci in zip(full["Δ vs base"], full["Δ 95% CI"])],
        "p Holm": full["p Holm"], "verdict": ["" if isna(v) else str(v) for v in summary["verdict"]],
        "rank": full["mean rank"]})


def format_summary(summary: pd.DataFrame, wide: bool = False) -> str:
    """Fixed-width text table for the terminal: `terminal_table`, its variant names shortened (…) where the
    table would pass `TERMINAL_WIDTH` columns; `wide`: every column of the files."""
    table = display_table(summary) if wide else terminal_table(summary)
    widths = {c: max(len(c), *(len(v) for v in table[c])) for c in table}
    if not wide:
        room = TERMINAL_WIDTH - sum(widths.values()) - 2 * (len(widths) - 1) + widths["variant"]
        widths["variant"] = max(len("variant"), min(widths["variant"], room))
        table["variant"] = [v if len(v) <= widths["variant"] else v[:widths["variant"] - 1] + "…"
                            for v in table["variant"]]

    def line(cells):
        return "  ".join(v.ljust(widths[c]) if c == "variant" else v.rjust(widths[c])
                         for c, v in zip(table.columns, cells)).rstrip()

    rule = "  ".join("-" * w for w in widths.values())
    return "\n".join([line(table.columns), rule, *(line(r) for r in table.itertuples(index=False))])


def format_markdown(summary: pd.DataFrame) -> str:
    """The summary as a GitHub markdown table."""
    table = display_table(summary)
    return "\n".join(_markdown(list(table.itertuples(index=False)), list(table.columns)))


def format_latex(summary: pd.DataFrame) -> str:
    """booktabs tabular; Δ is spelled out because plain LaTeX has no Greek in text mode."""
    table = display_table(summary)
    table.columns = [c.replace("Δ", "diff") for c in table.columns]
    return table.to_latex(index=False, escape=True, column_format="l" + "r" * (table.shape[1] - 1))


def metric_name(frame: pd.DataFrame) -> str:
    """`test acc` or `val acc`: the metric a summary or pairs frame holds."""
    metric = frame["metric"].iloc[0] if len(frame) else "test_acc"
    return METRIC_NAMES.get(metric, metric)


def _markdown(rows: list, header: list[str]) -> list[str]:
    """GitHub markdown lines, first column left-aligned (written by hand: pandas' to_markdown needs tabulate)."""

    def line(cells):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    return [line(header), line(["---"] + ["---:"] * (len(header) - 1)), *(line(r) for r in rows)]


def format_pairs_markdown(pairs: pd.DataFrame, summary: pd.DataFrame, margin: float) -> str:
    """Per group, the lower triangle of the pairs matrix: Δ = row − column in pp, `*` when its Holm p
    (over the group's pairs) is below 0.05, `≈` when equivalent within ±margin; columns are numbered like
    the rows. pairs.csv has the rest (CIs, p-values, d_z, TOST p, power)."""
    lines = [f"Δ = row − column in percentage points of {metric_name(pairs)}; `*` Holm p < 0.05 over the group's "
             f"pairs, `≈` equivalent within ±{margin:g} pp (TOST p < 0.05); pairs.csv has the CIs, p-values, "
             f"effect sizes and power."]
    for group, members in summary.groupby("group", sort=False):
        names = list(members["variant"])
        if len(names) < 2:
            continue
        cells = {(p.a, p.b): _pair_cell(p) for p in pairs[pairs["group"] == group].itertuples()}
        rows = [[f"{i + 1} {a}", *(cells.get((a, b), "") for b in names[:-1])] for i, a in enumerate(names)]
        lines += ["", *([f"**{group}**", ""] if group else []), *_markdown(rows, ["", *map(str, range(1, len(names)))])]
    return "\n".join(lines)


def _pair_cell(pair) -> str:
    if isna(pair.diff):
        return ""
    mark = "*" if pair.verdict == "different" else "≈" if pair.verdict.startswith("equivalent") else ""
    return f"{_pp(pair.diff)}{mark}"


def format_curves_markdown(quarters: pd.DataFrame) -> str:
    """Per group, Δ val acc against the baseline (pp, [95% CI]) in each quarter of training, on each run's mean
    over the quarter's epochs (`curves.quarter_gaps`): does a gap close, stay or grow as training goes on?"""
    lines = ["Δ val acc against the baseline in percentage points, [95% CI] paired on the seeds, of each run's mean "
             "over the epochs trained named in the header (the quarters of its training); not corrected over "
             "quarters, exploratory: the summary's test accuracy confirms. curve_quarters.csv has these, curves.csv "
             "every epoch."]
    for group, members in quarters[~quarters["baseline"]].groupby("group", sort=False):
        at = members.set_index(["variant", "quarter"])
        spans = members.groupby("quarter").agg(first=("first_epoch", "min"), last=("last_epoch", "max"))
        header = [f"{first}–{last}" if first < last else str(first) for first, last in spans.itertuples(index=False)]
        rows = [[variant, *(_gap_cell(at.loc[(variant, q)]) if (variant, q) in at.index else "" for q in spans.index)]
                for variant in dict.fromkeys(members["variant"])]
        lines += ["", *([f"**{group}**", ""] if group else []), *_markdown(rows, ["", *header])]
    return "\n".join(lines)


def _gap_cell(point) -> str:
    if isna(point["diff"]):
        return ""
    ci = "" if isna(point["diff_ci_low"]) else f" [{_pp(point['diff_ci_low'])}, {_pp(point['diff_ci_high'])}]"
    return f"{_pp(point['diff'])}{ci}"


def primary_lines(summary: pd.DataFrame) -> list[str]:
    """The contrast named in advance, one line per group that holds it: its cells of `display_table` (Δ [CI],
    pairs, p, Holm p, effect) and verdict."""
    shown = display_table(summary)
    baseline_of = summary[summary["baseline"]].set_index("group")["variant"]
    lines = []
    for i in summary.index[summary["primary"]]:
        row, cells = summary.loc[i], shown.loc[i]
        tested = (f"{cells['Δ vs base']} {cells['Δ 95% CI']} pp over {cells['pairs']} pairs, p {cells['p']}, "
                  f"Holm p {cells['p Holm']}, {cells['effect'] or 'no effect size'}: {row['verdict']}")
        lines.append(f"primary contrast, named in advance: {row['variant']} against {baseline_of[row['group']]}: "
                     f"{tested if row['verdict'] else _untested(cells, row['n_pairs'])}")
    return lines


def _untested(cells: pd.Series, n_pairs: int) -> str:
    """Why a contrast has no verdict: too few pairs, or differences that agree on every seed (no spread)."""
    if n_pairs >= 2:
        return (f"{cells['Δ vs base']} pp on each of its {n_pairs} pairs: exact on these seeds, its spread unknown, "
                f"so untested")
    return "not tested yet (it needs 2 seeds both completed)"


def omnibus_lines(omnibus: pd.DataFrame) -> list[str]:
    """One line per group (and per `within` slice of it): Friedman's test and the repeated-measures ANOVA on
    the complete seeds."""
    lines = []
    for row in omnibus.itertuples():
        where = ", ".join(part for part in (row.group, row.within) if part)
        where = f"{where}: " if where else ""
        if isna(row.friedman_chi2) and isna(row.anova_f):
            lines.append(f"{where}no omnibus test: it needs 2 variants and 2 seeds that every variant completed "
                         f"({row.k} variants, {row.n_seeds} such seeds).")
            continue
        anova = "" if isna(row.anova_f) else (
            f"; repeated-measures ANOVA F({row.anova_df1:.0f}, {row.anova_df2:.0f}) = {row.anova_f:.2f}, "
            f"{_p_is(row.anova_p)}, Greenhouse–Geisser ε = {row.gg_epsilon:.2f}, {_p_is(row.anova_p_gg)}")
        friedman = "Friedman: undefined (every seed ties)" if isna(row.friedman_chi2) else \
            f"Friedman χ²({row.friedman_df:.0f}) = {row.friedman_chi2:.2f}, {_p_is(row.friedman_p)}"
        lines.append(f"{where}do the {row.k} variants differ, on the {row.n_seeds} seeds every one completed? "
                     f"{friedman}{anova}.")
    return lines


def factorial_lines(factorial: pd.DataFrame) -> list[str]:
    """Per group, the factorial repeated-measures ANOVA: a line naming its cells and seeds, then one per effect
    (indented); none when no factorial was asked for."""
    lines = []
    for group, rows in (factorial.groupby("group", sort=False) if len(factorial) else []):
        first = rows.iloc[0]
        where = f"{group}: " if group else ""
        if rows["anova_f"].isna().all():
            lines.append(f"{where}no factorial test: it needs 2 seeds that all {first.k} cells completed, and "
                         f"spread between them ({first.n_seeds} such seeds).")
            continue
        outside = f"; {first.left_out} outside the crossing cells" if first.get("left_out") else ""
        lines.append(f"{where}factorial repeated-measures ANOVA over {first.k} cells (the baseline left out{outside}), "
                     f"on the {first.n_seeds} seeds every cell completed:")
        for row in rows.itertuples():
            kind = "interaction" if " × " in row.effect else "main effect of"
            lines.append(f"  {kind} {row.effect}: F({row.anova_df1:.0f}, {row.anova_df2:.0f}) = {row.anova_f:.2f}, "
                         f"{_p_is(row.anova_p)}; Greenhouse–Geisser ε = {row.gg_epsilon:.2f}, "
                         f"{_p_is(row.anova_p_gg)}; partial η² = {row.partial_eta2:.2f}.")
    return lines


def format_contrast_markdown(contrast: pd.DataFrame) -> str:
    """The contrast across groups (`contrast.contrast`): a line saying what was compared, then a table of each
    variant's change and each placement's gap change, AFTER − BEFORE in pp, with its CI, Holm p over its family,
    effect size, TOST p, verdict and the detectable difference."""
    first = contrast.iloc[0]
    header = ["variant", "pairs", "Δ", "95% CI", "p", "p Holm", "effect", f"TOST p (±{first.equivalence_margin:g})",
              "verdict", "detectable Δ"]
    rows = [[row.variant if row.family == "change" else f"gap {row.variant}", row.n_pairs, _pp(row.diff),
             *_interval(_pp, pd.Series([row.diff_ci_low]), pd.Series([row.diff_ci_high])), _p(row.p_value),
             _p(row.p_holm), "" if isna(row.effect) else f"{row.effect_kind} {row.effect:+.2f}", _p(row.tost_p),
             row.verdict, "" if isna(row.detectable_diff) else f"{100 * row.detectable_diff:.2f}"]
            for row in contrast.itertuples()]
    title = (f"{first.axis}: {first.after_value} − {first.before_value} in pp of {metric_name(contrast)}, paired by "
             f"seed: each variant's change, then each placement's gap to its baseline (gap), Holm over each family.")
    return "\n".join([title, "", *_markdown(rows, header)])


def tuned_lines(tuned) -> list[str]:
    """How a tuned comparison (`tuned.tune`) chose, then each variant's choice (indented), its validation mean and
    every value's, flagged when the choice is at the edge of the grid's values."""
    blocks = ", ".join(map(str, tuned.confirm_on)) or "none yet"
    leaf = tuned.axis.rsplit(".", 1)[-1]
    lines = [f"{tuned.axis} chosen per variant on val acc of seed blocks {', '.join(map(str, tuned.choose_on))} "
             f"(the mean; ties to the smaller value), confirmed on test acc of blocks {blocks}, each variant at its "
             f"choice, paired by seed:"]
    for c in tuned.choices.itertuples():
        if isna(c.chosen):
            lines.append(f"  {c.variant}: no value completed on every choose block")
            continue
        edge = f"; at the grid's edge: the best {leaf} may lie outside it" if c.edge else ""
        lines.append(f"  {c.variant}: {value_text(c.chosen)} (val {_pct(c.chosen_val_mean)} %{edge}); every value: "
                     f"{c.scores}")
    return lines

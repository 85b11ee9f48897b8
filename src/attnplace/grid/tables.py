"""The summary as tables for people: terminal, GitHub markdown and LaTeX. Formatting only, no statistics.

Accuracies are shown in %, differences in percentage points. A confidence interval of an accuracy is
clipped to [0, 100] %: the t interval is symmetric and, with few seeds, can pass the bounds an accuracy
cannot. Differences are not clipped.
"""

import pandas as pd

from .records import isna

EFFECT_NAMES = {"paired": "d_z", "welch": "g"}


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
    effect = [f"{EFFECT_NAMES[t]} {e:+.2f}" if t in EFFECT_NAMES and not isna(e) else ""
              for t, e in zip(summary["test"], summary["effect_dz"])]
    table = pd.DataFrame({
        "variant": summary["variant"],
        "n": summary["n"].astype(str),
        "failed": summary["failures"].astype(str),
        "test acc %": [m + s for m, s in zip(_cells(_pct, summary["acc_mean"]), std)],
        "95% CI": _interval(_pct, summary["ci_low"], summary["ci_high"], clip=True),
        "Δ vs base": ["baseline" if b else d for b, d in zip(base, _cells(_pp, summary["diff"]))],
        "Δ 95% CI": unless_base(_interval(_pp, summary["diff_ci_low"], summary["diff_ci_high"])),
        "pairs": unless_base(summary["n_pairs"].astype(str)),
        "p": [_p(p) + (f" ({t})" if t else "") for p, t in zip(summary["p_value"], summary["test"])],
        "p Holm": _cells(_p, summary["p_holm"]),
        "effect": effect,
    })
    if "acc5_mean" in summary:
        table["top-5 %"] = _cells(_pct, summary["acc5_mean"])
    table["params"] = _cells(_si, summary["params"])
    table["FLOPs"] = _cells(_si, summary["flops"])
    table["img/s"] = _cells(lambda v: f"{v:,.0f}", summary["train_images_per_s"])
    return table


def format_summary(summary: pd.DataFrame) -> str:
    """Fixed-width text table for the terminal."""
    table = display_table(summary)
    widths = {c: max(len(c), *(len(v) for v in table[c])) for c in table}

    def line(cells):
        return "  ".join(v.ljust(widths[c]) if c == "variant" else v.rjust(widths[c])
                         for c, v in zip(table.columns, cells)).rstrip()

    rule = "  ".join("-" * w for w in widths.values())
    return "\n".join([line(table.columns), rule, *(line(r) for r in table.itertuples(index=False))])


def format_markdown(summary: pd.DataFrame) -> str:
    """GitHub markdown table (written by hand: pandas' to_markdown needs tabulate)."""
    table = display_table(summary)

    def line(cells):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    align = ["---" if c == "variant" else "---:" for c in table.columns]
    return "\n".join([line(table.columns), line(align), *(line(r) for r in table.itertuples(index=False))])


def format_latex(summary: pd.DataFrame) -> str:
    """booktabs tabular; Δ is spelled out because plain LaTeX has no Greek in text mode."""
    table = display_table(summary)
    table.columns = [c.replace("Δ", "diff") for c in table.columns]
    return table.to_latex(index=False, escape=True, column_format="l" + "r" * (table.shape[1] - 1))

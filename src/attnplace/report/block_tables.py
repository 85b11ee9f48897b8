"""The seed blocks and the hardware × variant test as lines for people (terminal and summary.md). Formatting
only: the blocks come from `seed_blocks.py`, the test from `hardware.py`."""

import pandas as pd

from .runs import isna
from .stats import ALPHA
from .tables import _p


def block_lines(blocks: pd.DataFrame) -> list[str]:
    """One line per seed block (`blocks.seed_blocks`): its status, runs ended, hardware, and whether the tables
    hold it."""
    counted = int(blocks["status"].eq("counted").sum())
    tails = {"counted": "", "partial": "; not in the tables",
             "extra": f"; complete after the first {counted} counted: reported beside them, not in the tables"}
    return [f"block seed {b.seed}: {b.status} ({b.ended} of {b.total} runs ended), "
            f"{'hardware not recorded' if isna(b.hardware) else f'on {b.hardware}'}{tails[b.status]}"
            for b in blocks.itertuples()]


def left_out_lines(blocks: pd.DataFrame) -> list[str]:
    """The lines of the blocks the tables leave out."""
    return [line for line, status in zip(block_lines(blocks), blocks["status"]) if status != "counted"]


def counted_line(blocks: pd.DataFrame, wanted: int | None) -> str:
    """The counted blocks in one line, for the terminal: their seeds and how many ran on each hardware kind."""
    counted = blocks[blocks["status"].eq("counted")]
    kinds = counted["hardware"].fillna("").value_counts(sort=False)
    where = "; ".join(f"{n} on {kind}" if kind else f"{n} not saying their hardware" for kind, n in kinds.items())
    short = f" of {wanted} wanted" if wanted and len(counted) < wanted else ""
    return f"seed blocks in the tables: {len(counted)}{short} (seed {', '.join(map(str, counted['seed']))}: {where})"


def hardware_line(tests: pd.DataFrame, kinds: pd.Series) -> str:
    """Whether the paired differences depend on the hardware (`hardware.hardware_tests`), in one line: the
    smallest Holm p and its comparison, or why there was no test. `kinds`: hardware kind -> counted blocks."""
    named = ", ".join(f"{kind}: {n}" for kind, n in kinds.items())
    if kinds.empty:
        return "hardware × variant: not testable: the records do not say their hardware"
    if len(kinds) == 1:
        return f"hardware × variant: all {kinds.iloc[0]} counted blocks ran on one hardware kind ({kinds.index[0]})"
    if kinds.ge(2).sum() < 2:
        return f"hardware × variant: not testable: needs ≥ 2 blocks on each of ≥ 2 hardware kinds ({named})"
    tested = tests.dropna(subset=["p_holm"])
    if tested.empty:
        return (f"hardware × variant: not testable: no variant has a paired Δ that varies, on ≥ 2 blocks of each "
                f"of 2 hardware kinds ({named})")
    low = tested.loc[tested["p_holm"].idxmin()]
    answer = ("the paired differences depend on the hardware: the tables average over it" if low.p_holm < ALPHA
              else "the paired differences do not depend on the hardware detectably")
    return (f"hardware × variant: smallest Holm p = {_p(low.p_holm)} over {len(tested)} test(s) ({low.variant}: "
            f"Δ {low.diff_a:+.2f} pp on {low.kind_a} ({low.n_a} blocks) vs {low.diff_b:+.2f} pp on {low.kind_b} "
            f"({low.n_b} blocks)); {answer}")

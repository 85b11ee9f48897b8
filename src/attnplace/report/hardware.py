"""Does the hardware change the answer? The paired differences of the blocks on one hardware kind against those
on another.

Blocks may train on different hardware (a study continued on other machines), and each block pairs its variants
on one kind, so a table's Δ averages over the kinds its blocks ran on. That is sound as long as Δ does not depend
on the kind: fp32 on another CPU model computes other last bits, which move every variant alike, but a kernel
that behaves differently for one attention module would not. Per variant (not a baseline), its Δ against the
group's baseline on each counted block (percentage points), compared between two hardware kinds with at least 2
blocks each by Welch's t-test (the kinds' spreads need not agree); with more kinds, each pair of them; Holm over
all those tests. Pure: the runs frame of the counted blocks in, a frame out.
"""

from itertools import combinations

import numpy as np
import pandas as pd

from . import stats
from .seed_blocks import block_kinds
from ..run.report_settings import ReportSettings
from .summary import groups

MIN_BLOCKS = 2  # per hardware kind: Welch's t needs a spread on each side
HARDWARE_COLUMNS = ["group", "variant", "kind_a", "n_a", "diff_a", "kind_b", "n_b", "diff_b", "t", "p_value",
                    "p_holm"]


def hardware_tests(runs: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.DataFrame:
    """One row per variant with a baseline and pair of hardware kinds with 2 counted blocks each (in the order
    first met): the kinds, each one's blocks with a paired Δ (`n_a`, `n_b`) and mean Δ in pp (`diff_a`,
    `diff_b`), Welch's t and p, and Holm's p over every row. Empty (with these columns) when fewer than two
    kinds have 2 blocks each."""
    kind_of = block_kinds(runs)
    blocks = kind_of.value_counts(sort=False)
    kinds = list(blocks.index[blocks >= MIN_BLOCKS])
    rows = []
    for group in groups(runs, settings) if len(kinds) >= 2 else []:
        if group.baseline is None:
            continue
        delta = group.acc - group.acc.loc[group.baseline]  # variant × seed
        for variant in delta.index.drop(group.baseline):
            by_kind = {k: delta.loc[variant].reindex(kind_of.index[kind_of.eq(k)]).dropna() for k in kinds}
            rows += [{"group": group.name, "variant": variant, **_welch(a, by_kind[a], b, by_kind[b])}
                     for a, b in combinations(kinds, 2)]
    frame = pd.DataFrame(rows, columns=HARDWARE_COLUMNS[:-1])
    frame["p_holm"] = stats.holm(frame["p_value"])
    return frame


def _welch(kind_a: str, a: pd.Series, kind_b: str, b: pd.Series) -> dict:
    """Welch's t of Δ on kind a against kind b (`stats.welch`), mean Δs in pp; t and p undefined (NaN) with
    fewer than 2 blocks on a side, or no spread beyond float rounding on either side."""
    c = stats.welch(a, b)
    return {"kind_a": kind_a, "n_a": len(a), "diff_a": 100 * a.mean() if len(a) else np.nan, "kind_b": kind_b,
            "n_b": len(b), "diff_b": 100 * b.mean() if len(b) else np.nan, "t": c.diff / c.se, "p_value": c.p_value}

"""All variants of a group at once, each seed a block: pure functions of `acc` (variant × seed → accuracy).

They use the n seeds that every one of the k variants completed (`blocks`).

Friedman's test: rank each seed's k accuracies (1 = best, ties averaged), R_j = variant j's rank sum,
    χ²_F = [12/(n·k·(k + 1))·Σⱼ R_j² − 3·n·(k + 1)] / C,  C = 1 − Σ_ties (t³ − t) / (n·(k³ − k)),
    p = P(χ²_{k−1} > χ²_F). It assumes nothing about the spread, which differs between placements
    (p2 varies 4× as much as the plain block), but with few seeds it cannot reach small p.
Repeated-measures ANOVA beside it, on orthonormal contrasts: x_s is seed s's vector of accuracies, and C
    (q × k, orthonormal rows orthogonal to 1) spans the effect tested, y_s = C·x_s, ȳ their mean over seeds:
        SS_effect = n·‖ȳ‖²,  SS_error = Σ_s ‖y_s − ȳ‖²,  F = [SS_effect/q] / [SS_error/(q·(n − 1))],
        partial η² = SS_effect / (SS_effect + SS_error),
    its p on ε·q and ε·q·(n − 1) df with Greenhouse–Geisser's ε = tr(S)² / (q·tr(S²)), S the q × q
    covariance of y over seeds, which corrects for the unequal spreads (ε = 1: sphericity holds; always 1 when
    q = 1).
    One-way (every variant of a group): C spans the k − 1 contrasts between variants, and SS_effect, SS_error
    are the textbook SS_variants, SS_variants×seeds.
    Factorial (the variants cross factors A, B, ... with a, b, ... levels, cells in row-major order): the
    effect of a set of factors has C = ⊗_f (C_f if f is in the set, else 1ᵀ/√L_f), C_f the L_f − 1 contrasts
    of factor f: main effects, then interactions, each tested against its own effect × seed error.
Mean rank (1 = best) and wins: on each seed the best variant wins 1, t variants tied best 1/t each.
Undefined quantities (fewer than 2 variants or seeds, no error variance) are NaN, never a guess.
"""

import itertools
import math
from collections.abc import Sequence
from functools import reduce

import numpy as np
import pandas as pd
from scipy import linalg, stats

from .stats import ROUNDING

NAN = math.nan
ANOVA_COLUMNS = ["anova_f", "anova_df1", "anova_df2", "anova_p", "gg_epsilon", "anova_p_gg", "partial_eta2"]


def blocks(acc: pd.DataFrame) -> pd.DataFrame:
    """The variants with any completed run × the seeds every one of them completed."""
    return acc.dropna(how="all").dropna(axis="columns")


def friedman(table: pd.DataFrame) -> dict:
    """Friedman's χ² and p over `table` (variants × complete seeds), with the tie correction (module docstring)."""
    k, n = table.shape
    if k < 2 or n < 2:
        return {"friedman_chi2": NAN, "friedman_df": NAN, "friedman_p": NAN}
    ranks = table.rank(axis=0, ascending=False)  # within each seed, 1 = best; ties share the mean rank
    ties = sum(float(t**3 - t) for seed in table for t in table[seed].value_counts())
    correction = 1 - ties / (n * (k**3 - k))
    chi2 = (12 / (n * k * (k + 1)) * float((ranks.sum(axis=1) ** 2).sum()) - 3 * n * (k + 1)) / correction \
        if correction > 0 else NAN
    return {"friedman_chi2": chi2, "friedman_df": k - 1, "friedman_p": float(stats.chi2.sf(chi2, k - 1))}


def contrasts(levels: int) -> np.ndarray:
    """(levels − 1) × levels orthonormal rows, each orthogonal to the all-ones vector."""
    return linalg.null_space(np.ones((1, levels))).T


def scores(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """y_s = C·x_s for accuracies `x` (seeds × cells) and contrasts `c` (q × cells). Each seed's accuracies are
    centred first, which C ⟂ 1 leaves y unchanged in exact arithmetic; in floating point C's rows sum to ~1e-16,
    not 0, and uncentred that would give identical variants an F on rounding noise."""
    return (x - x.mean(axis=1, keepdims=True)) @ c.T


def contrast_anova(y: np.ndarray) -> dict:
    """The repeated-measures F test of one effect from its contrast scores `y` (seeds × q; module docstring)."""
    n, q = y.shape
    if q < 1 or n < 2:
        return dict.fromkeys(ANOVA_COLUMNS, NAN)
    mean = y.mean(axis=0)
    ss_effect, ss_error = n * float(mean @ mean), float(((y - mean) ** 2).sum())
    if ss_error <= n * q * ROUNDING**2:  # every seed agrees (up to rounding): the effect is known, its error not
        return dict.fromkeys(ANOVA_COLUMNS, NAN)
    df1, df2 = q, q * (n - 1)
    f = (ss_effect / df1) / (ss_error / df2)
    s = np.atleast_2d(np.cov(y, rowvar=False))
    epsilon = float(np.trace(s) ** 2 / (q * np.trace(s @ s)))
    return {"anova_f": f, "anova_df1": df1, "anova_df2": df2, "anova_p": float(stats.f.sf(f, df1, df2)),
            "gg_epsilon": epsilon, "anova_p_gg": float(stats.f.sf(f, epsilon * df1, epsilon * df2)),
            "partial_eta2": ss_effect / (ss_effect + ss_error)}


def rm_anova(table: pd.DataFrame) -> dict:
    """One-way repeated-measures ANOVA over `table` (variants × complete seeds), with Greenhouse–Geisser's ε."""
    k, n = table.shape
    if k < 2 or n < 2:
        return dict.fromkeys(ANOVA_COLUMNS, NAN)
    return contrast_anova(scores(table.to_numpy(dtype=float).T, contrasts(k)))


def omnibus(acc: pd.DataFrame) -> dict:
    """Does any variant of the group differ? k variants, n complete seeds, Friedman and the RM-ANOVA."""
    table = blocks(acc)
    return {"k": table.shape[0], "n_seeds": table.shape[1], **friedman(table), **rm_anova(table)}


def factorial(acc: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Factorial repeated-measures ANOVA: `acc`'s index holds one level per factor (a MultiIndex named
    `factors`, every combination once). One row per effect (`effect`: `A`, `B`, `A × B`, ...) with k (cells),
    n_seeds (complete seeds) and the ANOVA columns; all NaN when a cell has no complete seed."""
    levels = [list(dict.fromkeys(acc.index.get_level_values(f))) for f in factors]
    cells = pd.MultiIndex.from_product(levels, names=list(factors))
    table = acc.reindex(cells).dropna(axis="columns")  # a cell without runs leaves no complete seed
    x = table.to_numpy(dtype=float).T  # seeds × cells
    rows = []
    for size in range(1, len(factors) + 1):
        for chosen in itertools.combinations(range(len(factors)), size):
            c = reduce(np.kron, [contrasts(len(lv)) if i in chosen else np.full((1, len(lv)), 1 / math.sqrt(len(lv)))
                                 for i, lv in enumerate(levels)])
            rows.append({"effect": " × ".join(factors[i] for i in chosen), "k": len(cells),
                         "n_seeds": x.shape[0], **contrast_anova(scores(x, c))})
    return pd.DataFrame(rows)


def ranks(acc: pd.DataFrame) -> pd.DataFrame:
    """Per variant, on the complete seeds: mean rank (1 = best) and wins (ties split); NaN outside them."""
    table = blocks(acc)
    best = table.eq(table.max(axis=0), axis=1)
    out = pd.DataFrame({"mean_rank": table.rank(axis=0, ascending=False).mean(axis=1),
                        "wins": (best / best.sum(axis=0)).sum(axis=1)}, index=table.index)
    if table.shape[1] == 0:
        out[:] = NAN
    return out.reindex(acc.index)

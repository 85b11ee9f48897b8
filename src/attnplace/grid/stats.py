"""The statistics behind every results table: pure functions of accuracies, no files and no formatting.

For one variant's n runs (one per seed):           mean, sample std s, t-based 95% CI  mean ± t₀.₉₇₅,ₙ₋₁·s/√n.
Against its baseline, paired on the k shared seeds   dᵢ = accᵢ − baseᵢ  (k ≥ 2):
    Δ = mean(d),  CI = Δ ± t₀.₉₇₅,ₖ₋₁·s_d/√k,  t = Δ/(s_d/√k) on k−1 df,  Cohen's d_z = Δ/s_d.
Unpaired (fewer than two shared seeds), Welch:
    Δ = mean(a) − mean(b),  se = √(s_a²/n_a + s_b²/n_b),  df by Welch–Satterthwaite,
    Hedges' g = J·Δ/s_pooled,  J = 1 − 3/(4(n_a + n_b) − 9).
Holm's step-down correction over the m comparisons against one baseline: sort p ascending,
    p_holm(i) = max_{j ≤ i} min(1, (m − j + 1)·p(j)).
Undefined quantities (n < 2, zero spread) are NaN, never a guess.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
NAN = math.nan


def t_quantile(df: float) -> float:
    """Two-sided `CONFIDENCE` multiplier of the t distribution with `df` degrees of freedom."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def describe(values: Sequence[float]) -> dict:
    """n, mean, sample std and t-based CI of one variant's accuracies."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else NAN
    if n < 2:
        return {"n": n, "acc_mean": mean, "acc_std": NAN, "ci_low": NAN, "ci_high": NAN}
    std = float(x.std(ddof=1))
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return {"n": n, "acc_mean": mean, "acc_std": std, "ci_low": mean - half, "ci_high": mean + half}


@dataclass(frozen=True)
class Comparison:
    """A variant against its baseline. `effect` is d_z when paired, Hedges' g when Welch."""

    test: str = ""  # "paired" | "welch" | "" (not enough runs to test)
    n_pairs: int = 0
    diff: float = NAN
    diff_ci_low: float = NAN
    diff_ci_high: float = NAN
    p_value: float = NAN
    effect: float = NAN


def paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Paired t-test of a − b (aligned, same seeds)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    k = len(d)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:  # identical differences: the estimate is exact on these seeds, but t is undefined
        return Comparison("paired", k, mean, mean, mean)
    se = sd / math.sqrt(k)
    half = t_quantile(k - 1) * se
    p = 2 * float(stats.t.sf(abs(mean / se), k - 1))
    return Comparison("paired", k, mean, mean - half, mean + half, p, mean / sd)


def welch(a: Sequence[float], b: Sequence[float], n_pairs: int = 0) -> Comparison:
    """Welch's unequal-variance t-test of mean(a) − mean(b), with Hedges' g."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    if va + vb == 0:
        return Comparison("welch", n_pairs, diff)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = t_quantile(df) * se
    p = 2 * float(stats.t.sf(abs(diff / se), df))
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    g = (1 - 3 / (4 * (na + nb) - 9)) * diff / pooled
    return Comparison("welch", n_pairs, diff, diff - half, diff + half, p, g)


def compare(variant: Mapping[int, float], baseline: Mapping[int, float]) -> Comparison:
    """Accuracy by seed against the baseline's: paired on the shared seeds when there are two or more,
    else Welch over all runs when each side has two or more; otherwise only an estimate, untested: the
    difference on the one shared seed (same initial weights, same batches), or of the means."""
    shared = sorted(set(variant) & set(baseline))
    if len(shared) >= 2:
        return paired([variant[s] for s in shared], [baseline[s] for s in shared])
    if len(variant) >= 2 and len(baseline) >= 2:
        return welch(list(variant.values()), list(baseline.values()), n_pairs=len(shared))
    if shared:
        return Comparison("", 1, variant[shared[0]] - baseline[shared[0]])
    if variant and baseline:
        return Comparison("", 0, float(np.mean(list(variant.values())) - np.mean(list(baseline.values()))))
    return Comparison()


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order; NaN entries stay NaN and do not count towards m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), NAN)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()

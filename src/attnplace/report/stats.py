"""The statistics of one variant and of pairs of variants: pure functions of accuracies, no files, no formatting.

A report's numbers come from one frame `acc`: variant × seed → accuracy (a fraction), NaN where a run is
missing or failed, rows in the report's order. Every statistic is a function of that frame or its rows;
those of all variants of a group at once (omnibus tests, ranks, the factorial ANOVA) are in `anova.py`.

One variant's n runs:  mean, sample std s, 95% CI  mean ± t₀.₉₇₅,ₙ₋₁·s/√n.
Two variants a, b, paired on the k seeds both completed, dᵢ = aᵢ − bᵢ (k ≥ 2):
    Δ = mean(d), s_d = sd(d), se = s_d/√k, df = k − 1, CI = Δ ± t₀.₉₇₅,df·se, p = 2·P(T_df > |Δ|/se),
    Cohen's d_z = Δ/s_d.
Unpaired (fewer than two shared seeds), Welch:  Δ = mean(a) − mean(b), se = √(s_a²/n_a + s_b²/n_b),
    df = se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)),
    Hedges' g = J·Δ/s_pooled, J = 1 − 3/(4(n_a + n_b) − 9).
Equivalence within ±m, TOST (two one-sided t-tests on the same se and df):
    p_low = P(T_df ≥ (Δ + m)/se)  (H₀: Δ ≤ −m),  p_high = P(T_df ≤ (Δ − m)/se)  (H₀: Δ ≥ +m),
    p_TOST = max(p_low, p_high): below α exactly when the (1 − 2α) CI lies inside (−m, +m).
Power of the paired t-test (two-sided α = 0.05) against a true difference δ, from the noncentral t:
    λ = δ·√k/s_d,  power = P(T'_{k−1,λ} > t_c) + P(T'_{k−1,λ} < −t_c),  t_c = t_{1−α/2, k−1};
    the detectable difference is the δ whose power is 0.8 (λ solved numerically), and the seeds a
    difference δ needs is the least k whose power reaches 0.8, both with s_d the observed SD of the
    differences (a planning figure for the next grid, not a post-hoc power of this one).
Holm's step-down correction over m comparisons: sort p ascending, p_holm(i) = max_{j ≤ i} min(1, (m − j + 1)·p(j)).
Undefined quantities (n < 2, zero spread) are NaN, never a guess.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8
NAN = math.nan
# An SD of accuracies (fractions) below this is rounding, not variation: records hold float32 values (error
# ≈ 6e-8), while a real difference is one example or more, 1e-5 even for a 100,000-image split.
ROUNDING = 1e-6
COMPARISON_COLUMNS = ["diff", "diff_ci_low", "diff_ci_high", "n_pairs", "p_value", "p_holm", "effect", "effect_kind",
                      "test", "tost_p", "verdict", "detectable_diff", "seeds_for_margin"]


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
    if std <= ROUNDING:  # equal accuracies: a zero-width CI would claim a certainty n seeds cannot give
        return {"n": n, "acc_mean": mean, "acc_std": 0.0, "ci_low": NAN, "ci_high": NAN}
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return {"n": n, "acc_mean": mean, "acc_std": std, "ci_low": mean - half, "ci_high": mean + half}


# ---------------------------------------------------------------- two variants


@dataclass(frozen=True)
class Comparison:
    """Variant a against variant b. Everything but Δ derives from `se` and `df`, so a zero spread (se NaN)
    leaves the CI, p and TOST undefined instead of claiming an exact [Δ, Δ]."""

    test: str = ""  # "paired" | "welch" | "" (not enough runs to test)
    n_pairs: int = 0
    diff: float = NAN
    se: float = NAN
    df: float = NAN
    effect: float = NAN
    effect_kind: str = ""  # "d_z" (paired) | "g" (Hedges, Welch)
    sd_diff: float = NAN  # paired: the SD of the per-seed differences, which the power depends on

    @property
    def ci(self) -> tuple[float, float]:
        half = t_quantile(self.df) * self.se
        return self.diff - half, self.diff + half

    @property
    def p_value(self) -> float:
        return 2 * float(stats.t.sf(abs(self.diff) / self.se, self.df))

    def tost_p(self, margin: float) -> float:
        """TOST p-value for equivalence within ±margin (module docstring)."""
        low = stats.t.sf((self.diff + margin) / self.se, self.df)
        high = stats.t.cdf((self.diff - margin) / self.se, self.df)
        return float(max(low, high))


def paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Paired t-test of a − b (aligned, same seeds)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    k, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    # Identical differences: the estimate is exact on these seeds, but its spread is unknown. Accuracies are
    # counts over a split, so equal differences are common, and subtracting them leaves a rounding-error SD.
    if sd <= ROUNDING:
        return Comparison("paired", k, mean, sd_diff=0.0)
    return Comparison("paired", k, mean, sd / math.sqrt(k), k - 1, mean / sd, "d_z", sd)


def welch(a: Sequence[float], b: Sequence[float], n_pairs: int = 0) -> Comparison:
    """Welch's unequal-variance t-test of mean(a) − mean(b), with Hedges' g; a side of one value has no spread
    to test with, so the difference of the means is only an estimate."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    if min(na, nb) < 2:
        return Comparison("", n_pairs, float(a.mean() - b.mean()) if na and nb else NAN)
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    if max(va * na, vb * nb) <= ROUNDING**2:  # no spread on either side (as in `paired`)
        return Comparison("welch", n_pairs, diff)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    g = (1 - 3 / (4 * (na + nb) - 9)) * diff / pooled
    return Comparison("welch", n_pairs, diff, math.sqrt(va + vb), df, g, "g")


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Accuracy by seed (NaN = no run) against another variant's: paired on the shared seeds when there are
    two or more, else Welch over all runs when each side has two or more; otherwise only an estimate,
    untested: the difference on the one shared seed (same initial weights, same batches), or of the means."""
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    shared = sorted(set(a.index) & set(b.index))
    if len(shared) >= 2:
        return paired(a.loc[shared], b.loc[shared])
    if len(a) >= 2 and len(b) >= 2:
        return welch(a, b, n_pairs=len(shared))
    if shared:
        return Comparison("", 1, float(a.loc[shared[0]] - b.loc[shared[0]]))
    if len(a) and len(b):
        return Comparison("", 0, float(a.mean() - b.mean()))
    return Comparison()


# ---------------------------------------------------------------- power


def paired_power(delta: float, sd: float, k: int) -> float:
    """Power of the two-sided paired t-test with k seeds against a true mean difference `delta`."""
    critical = stats.t.ppf(1 - ALPHA / 2, k - 1)
    noncentrality = delta * math.sqrt(k) / sd
    # P(T'_λ < −t_c) = P(T'_{−λ} > t_c): scipy's nct.cdf far in the lower tail can return NaN, its sf does not.
    return float(stats.nct.sf(critical, k - 1, noncentrality) + stats.nct.sf(critical, k - 1, -noncentrality))


def detectable_difference(sd: float, k: int) -> float:
    """The smallest true paired difference that k seeds detect with 80% power, given the SD of the differences."""
    if not (k >= 2 and sd > 0):
        return NAN
    # Power reaches 0.8 below λ = 2(t_c + 1) for any df ≥ 1, where scipy's noncentral t is still accurate.
    top = 2 * (stats.t.ppf(1 - ALPHA / 2, k - 1) + 1) * sd / math.sqrt(k)
    return optimize.brentq(lambda delta: paired_power(delta, sd, k) - POWER, 0, top)


def seeds_needed(delta: float, sd: float, most: int = 100_000) -> float:
    """The least number of seeds whose paired t-test detects `delta` with 80% power (NaN past `most`).

    Starts from the normal approximation k₀ = ((z₀.₉₇₅ + z₀.₈)·s_d/δ)², which the t test needs a few more than.
    """
    if not (sd > 0 and delta != 0 and math.isfinite(delta)):
        return NAN
    k = max(2, math.floor(((stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)) * sd / delta) ** 2))
    while k <= most and paired_power(abs(delta), sd, k) < POWER:
        k += 1
    return k if k <= most else NAN


# ---------------------------------------------------------------- families of comparisons


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


def verdict(p_holm: float, tost_p: float, margin: float) -> str:
    """`different` when the Holm p < α, `equivalent within ±m` when the TOST p < α, else `inconclusive`;
    empty when nothing was tested. Each TOST is one comparison's claim: it is not corrected for the family."""
    if p_holm < ALPHA:
        return "different"
    if tost_p < ALPHA:
        return f"equivalent within ±{100 * margin:g} pp"
    return "inconclusive" if math.isfinite(p_holm) or math.isfinite(tost_p) else ""


def _row(c: Comparison, margin: float) -> dict:
    low, high = c.ci
    return {"diff": c.diff, "diff_ci_low": low, "diff_ci_high": high, "n_pairs": c.n_pairs, "p_value": c.p_value,
            "effect": c.effect, "effect_kind": c.effect_kind, "test": c.test, "tost_p": c.tost_p(margin),
            "detectable_diff": detectable_difference(c.sd_diff, c.n_pairs),
            "seeds_for_margin": seeds_needed(margin, c.sd_diff)}


def family(comparisons: Sequence[Comparison], margin: float, index=None) -> pd.DataFrame:
    """One row of `COMPARISON_COLUMNS` per comparison, with Holm over all of them and each one's verdict."""
    rows = [_row(c, margin) for c in comparisons]
    frame = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_holm", "verdict")], index=index)
    frame.insert(frame.columns.get_loc("p_value") + 1, "p_holm", holm(frame["p_value"]))
    frame.insert(frame.columns.get_loc("tost_p") + 1, "verdict",
                 [verdict(p, t, margin) for p, t in zip(frame["p_holm"], frame["tost_p"])])
    return frame


def against(acc: pd.DataFrame, baseline, margin: float) -> pd.DataFrame:
    """Each variant (row of `acc`) against the baseline row, Holm over those k − 1 comparisons; the baseline's
    own row has Δ = 0 and nothing else, and every row is blank when `baseline` is None (no baseline here)."""
    comparisons = [Comparison() if baseline is None else Comparison(diff=0.0) if variant == baseline
                   else compare(acc.loc[variant], acc.loc[baseline]) for variant in acc.index]
    return family(comparisons, margin, index=acc.index)


def pairwise(acc: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Every variant against every one listed before it: a, b, Δ = a − b and the comparison columns, with
    Holm over all k(k − 1)/2 pairs. With the baseline listed first, its pairs read `variant − baseline`."""
    pairs = [(a, b) for i, a in enumerate(acc.index) for b in acc.index[:i]]
    frame = family([compare(acc.loc[a], acc.loc[b]) for a, b in pairs], margin)
    frame.insert(0, "a", [a for a, _ in pairs])
    frame.insert(1, "b", [b for _, b in pairs])
    return frame

"""The statistics of pairs against hand computations: t intervals, paired and Welch comparisons, effect sizes,
Holm, TOST, power, all pairs and a baseline's family; then the same formulas against scipy and statsmodels."""

import math
import warnings

import numpy as np
import pytest
from record_fixtures import ACC
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from attnplace.report import stats

# Quantiles from a printed t table, so the tests do not check scipy against itself.
T975 = {1: 12.7062, 2: 4.302653, 3: 3.182446, 4: 2.776445}
T95_DF3 = 2.353363


def test_describe_mean_std_and_t_interval():
    d = stats.describe([0.90, 0.92, 0.94])
    half = T975[2] * 0.02 / math.sqrt(3)
    assert d["n"] == 3 and d["acc_mean"] == pytest.approx(0.92) and d["acc_std"] == pytest.approx(0.02)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.92 - half, 0.92 + half), rel=1e-5)
    one = stats.describe([0.5])
    assert one["acc_mean"] == 0.5 and math.isnan(one["acc_std"]) and math.isnan(one["ci_low"])
    equal = stats.describe([0.8] * 3)  # no spread: std 0 and no interval, not [0.8 - 1e-16, 0.8 + 1e-16]
    assert equal["acc_std"] == 0 and math.isnan(equal["ci_low"]) and math.isnan(equal["ci_high"])


def test_paired_difference_ci_p_and_dz():
    # d = [0.01, 0.03, 0.02, 0.04]: mean 0.025, sd = sqrt(((.015)² + (.005)² + (.005)² + (.015)²) / 3)
    a, b = [0.91, 0.93, 0.92, 0.94], [0.90, 0.90, 0.90, 0.90]
    sd = math.sqrt((0.015**2 + 0.005**2 + 0.005**2 + 0.015**2) / 3)
    c = stats.paired(a, b)
    se = sd / 2
    assert (c.test, c.n_pairs) == ("paired", 4)
    assert c.diff == pytest.approx(0.025)
    assert c.ci == pytest.approx((0.025 - T975[3] * se, 0.025 + T975[3] * se), rel=1e-5)
    assert (c.effect, c.effect_kind) == (pytest.approx(0.025 / sd), "d_z")  # Cohen's d_z
    t = 0.025 / se  # = 3.873: between t_{.99,3} = 4.541 and t_{.975,3} = 3.182, so 0.02 < p < 0.05
    assert t == pytest.approx(3.8730, rel=1e-4) and 0.02 < c.p_value < 0.05


def test_welch_difference_ci_and_hedges_g():
    a, b = [0.80, 0.84], [0.70, 0.71, 0.72]
    va, vb = 0.0008 / 2, 0.0001 / 3  # sample variances over n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 1 + vb**2 / 2)
    c = stats.welch(a, b)
    assert c.test == "welch" and c.diff == pytest.approx(0.11)
    assert df == pytest.approx(1.1696, rel=1e-4)  # 0.000433²/(0.0004² + 0.0000333²/2)
    assert c.ci[1] - c.diff == pytest.approx(stats.t_quantile(df) * se)
    pooled = math.sqrt((1 * 0.0008 + 2 * 0.0001) / 3)
    assert c.effect == pytest.approx((1 - 3 / (4 * 5 - 9)) * 0.11 / pooled)  # Hedges' g = J·d
    assert c.effect_kind == "g"


def test_welch_with_one_value_on_a_side_is_an_estimate_without_warnings():
    """One study holding one seed (a study under way, beside a finished one in `compare`): the difference of the
    means, untested, and no numpy warning about zero degrees of freedom on the console."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = stats.welch([0.003], [-0.008, -0.01, -0.012])
    assert (c.test, c.diff) == ("", pytest.approx(0.013)) and math.isnan(c.p_value) and math.isnan(c.ci[0])


def test_compare_pairs_on_shared_seeds_and_counts_them():
    variant = {0: 0.91, 1: 0.93, 3: 0.99}
    baseline = {0: 0.90, 1: 0.90, 2: 0.90}
    c = stats.compare(variant, baseline)
    assert (c.test, c.n_pairs) == ("paired", 2)
    assert c.diff == pytest.approx(0.02)  # seed 3 (no partner) and seed 2 (none) are left out of the pairs
    unpaired = stats.compare({3: 0.91, 4: 0.93}, baseline)
    assert (unpaired.test, unpaired.n_pairs) == ("welch", 0)
    single = stats.compare({0: 0.95}, {0: 0.90, 1: 0.80})  # one pair: its difference, untested
    assert (single.test, single.n_pairs) == ("", 1) and single.diff == pytest.approx(0.05)
    assert math.isnan(single.p_value) and math.isnan(single.ci[0])
    unshared = stats.compare({3: 0.95}, {0: 0.90, 1: 0.80})  # no pair: the difference of means
    assert (unshared.n_pairs, unshared.diff) == (0, pytest.approx(0.10))


def test_identical_differences_have_no_p_value_and_no_interval():
    """Every seed gives the same Δ: the estimate is exact on these seeds, but a zero-width CI [Δ, Δ] would
    claim a certainty that two seeds cannot give."""
    c = stats.paired([0.91, 0.92], [0.90, 0.91])
    assert c.diff == pytest.approx(0.01) and math.isnan(c.p_value) and math.isnan(c.effect)
    assert all(math.isnan(x) for x in c.ci) and math.isnan(c.tost_p(0.005))
    rounded = stats.paired([0.615, 0.63, 0.7305], [0.6245, 0.6395, 0.74])  # -0.95 pp each, up to float rounding
    assert math.isnan(rounded.ci[0])
    # As records hold them: through float32 (a committed run's val acc), the same -0.95 pp twice.
    rounded = stats.paired(np.float32([0.5435, 0.5530]).astype(float), np.float32([0.5530, 0.5625]).astype(float))
    assert rounded.diff == pytest.approx(-0.0095) and math.isnan(rounded.ci[0]) and rounded.sd_diff == 0
    constant = stats.welch([0.1] * 3, [0.2] * 3)  # var([0.1] * 3) is 3e-34 in floating point, not 0
    assert constant.diff == pytest.approx(-0.1) and math.isnan(constant.p_value) and math.isnan(constant.ci[1])


def test_holm_by_hand():
    # Sorted: .01 (×4 = .04), .02 (×3 = .06), .03 (×2 = .06), .04 (×1, but not below .06) -> .06
    assert stats.holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # min(1, 2·0.4) = 0.8, then max(0.8, 0.5)
    assert stats.holm([0.9, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([math.nan, 0.01, 0.02])  # NaN neither adjusted nor counted: m = 2
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.02])


# ---------------------------------------------------------------- equivalence and power


def test_tost_by_hand():
    # d = [.001, .002, .003, .002]: Δ = .002, s_d = sqrt(2e-6 / 3), se = s_d / 2, df = 3.
    c = stats.paired([0.901, 0.902, 0.903, 0.902], [0.9] * 4)
    se = math.sqrt(2e-6 / 3) / 2
    low, high = (0.002 + 0.005) / se, (0.002 - 0.005) / se  # 17.1 and -7.35
    assert c.tost_p(0.005) == pytest.approx(max(scipy_stats.t.sf(low, 3), scipy_stats.t.cdf(high, 3)))
    assert 0.0005 < c.tost_p(0.005) < 0.005  # |t_high| = 7.35 lies between t_.995,3 = 5.84 and t_.9995,3 = 12.9
    # A margin at the upper end of the 90% CI puts the upper one-sided test exactly at p = 0.05.
    assert c.tost_p(0.002 + T95_DF3 * se) == pytest.approx(0.05, rel=1e-4)
    assert c.tost_p(0.001) > 0.5  # a margin below Δ itself: not equivalent


def test_verdicts():
    assert stats.verdict(0.01, 0.01, 0.005) == "different"  # a real difference wins over a tight margin
    assert stats.verdict(0.2, 0.01, 0.005) == "equivalent within ±0.5 pp"
    assert stats.verdict(0.2, 0.3, 0.005) == "inconclusive"
    assert stats.verdict(math.nan, math.nan, 0.005) == ""


def test_detectable_difference_and_seeds_needed_by_hand():
    # The t-corrected normal approximation: δ ≈ (t_.975,9 + t_.80,9)·s_d/√10 = (2.2622 + 0.8830)/√10 = 0.9946.
    assert stats.detectable_difference(1.0, 10) == pytest.approx((2.262157 + 0.883029) / math.sqrt(10), rel=5e-3)
    assert stats.paired_power(stats.detectable_difference(0.01, 3), 0.01, 3) == pytest.approx(0.8)
    assert stats.detectable_difference(0.01, 5) == pytest.approx(0.5 * stats.detectable_difference(0.02, 5))
    # Cohen's table for the paired t (two-sided α = .05, power .8): d = 1 needs 10 seeds, d = 0.5 needs 34.
    assert stats.seeds_needed(1.0, 1.0) == 10 and stats.seeds_needed(-0.005, 0.01) == 34
    assert stats.paired_power(1.0, 1.0, 9) < 0.8 <= stats.paired_power(1.0, 1.0, 10)
    assert math.isnan(stats.detectable_difference(0.0, 5)) and math.isnan(stats.seeds_needed(0.01, 0.0))


# ---------------------------------------------------------------- every pair of a group


def test_pairwise_compares_every_pair_with_holm_over_all_of_them():
    pairs = stats.pairwise(ACC, 0.005)
    assert list(zip(pairs["a"], pairs["b"])) == [("b", "a"), ("c", "a"), ("c", "b")]  # Δ = later − earlier
    raw = [scipy_stats.ttest_rel(ACC.loc[a], ACC.loc[b]).pvalue for a, b in zip(pairs["a"], pairs["b"])]
    assert pairs["p_value"].tolist() == pytest.approx(raw)
    order = np.argsort(raw)  # Holm by hand: ×3, ×2, ×1, never below an earlier step
    expected, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        expected[i] = running
    assert pairs["p_holm"].tolist() == pytest.approx(expected)
    assert pairs.loc[1, "diff"] == pytest.approx((ACC.loc["c"] - ACC.loc["a"]).mean())
    assert set(pairs["verdict"]) <= {"different", "inconclusive", "equivalent within ±0.5 pp"}


def test_against_a_baseline_holds_the_baseline_row_blank():
    out = stats.against(ACC, "b", 0.005)
    assert out.loc["b", "diff"] == 0 and math.isnan(out.loc["b", "p_value"]) and out.loc["b", "n_pairs"] == 0
    assert out.loc["a", "diff"] == pytest.approx((ACC.loc["a"] - ACC.loc["b"]).mean())
    p = out["p_value"].drop("b")  # Holm over the 2 comparisons with b: the smaller p ×2, the larger ×1 (not below)
    assert out.loc[p.idxmin(), "p_holm"] == pytest.approx(min(1, 2 * p.min()))
    assert out.loc[p.idxmax(), "p_holm"] == pytest.approx(max(p.max(), min(1, 2 * p.min())))
    assert stats.against(ACC, None, 0.005)["diff"].isna().all()  # a group without a baseline compares nothing


# ---------------------------------------------------------------- against the libraries


@pytest.mark.parametrize("seed", range(4))
def test_comparisons_equal_scipy_and_statsmodels(seed):
    """The hand-written formulas give the libraries' numbers on accuracies like a study's. They are kept because
    they work from se and df, so paired and Welch share one CI and one TOST, and Holm leaves a NaN p out of m
    (statsmodels' `multipletests` counts it)."""
    rng = np.random.default_rng(seed)
    k, margin = 3 + seed, 0.005
    a, b = 0.87 + 0.003 * rng.standard_normal(k), 0.868 + 0.003 * rng.standard_normal(k)
    unpaired = stats.welch(a, b[:-1])
    for ours, theirs, tost in ((stats.paired(a, b), scipy_stats.ttest_rel(a, b), ttost_paired(a, b, -margin, margin)),
                               (unpaired, scipy_stats.ttest_ind(a, b[:-1], equal_var=False),
                                ttost_ind(a, b[:-1], -margin, margin, usevar="unequal"))):
        assert ours.p_value == pytest.approx(theirs.pvalue)
        assert ours.ci == pytest.approx(tuple(theirs.confidence_interval()))
        assert ours.tost_p(margin) == pytest.approx(tost[0])
    moments = [(x.mean(), x.std(ddof=1), len(x)) for x in (a, b[:-1])]
    assert unpaired.effect == pytest.approx(effectsize_smd(*moments[0], *moments[1])[0])  # Hedges' g
    p = rng.uniform(0, 0.2, 6)
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())


@pytest.mark.parametrize(("delta", "sd", "k"), [(0.004, 0.003, 5), (0.002, 0.0025, 3), (0.01, 0.004, 10)])
def test_power_equals_statsmodels(delta, sd, k):
    power = TTestPower()  # the one-sample t on the differences: the paired test's power
    assert stats.paired_power(delta, sd, k) == pytest.approx(power.power(delta / sd, k, 0.05))
    assert stats.detectable_difference(sd, k) == pytest.approx(sd * power.solve_power(nobs=k, alpha=0.05, power=0.8),
                                                               rel=1e-6)
    assert stats.seeds_needed(delta, sd) == math.ceil(power.solve_power(delta / sd, alpha=0.05, power=0.8))

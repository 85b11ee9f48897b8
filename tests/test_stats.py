"""The statistics against hand computations: t intervals, paired and Welch comparisons, effect sizes, Holm."""

import math

import pytest

from attnplace.grid import stats

# Quantiles from a printed t table, so the tests do not check scipy against itself.
T975 = {1: 12.7062, 2: 4.302653, 3: 3.182446, 4: 2.776445}


def test_describe_mean_std_and_t_interval():
    d = stats.describe([0.90, 0.92, 0.94])
    half = T975[2] * 0.02 / math.sqrt(3)
    assert d["n"] == 3 and d["acc_mean"] == pytest.approx(0.92) and d["acc_std"] == pytest.approx(0.02)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.92 - half, 0.92 + half), rel=1e-5)
    one = stats.describe([0.5])
    assert one["acc_mean"] == 0.5 and math.isnan(one["acc_std"]) and math.isnan(one["ci_low"])


def test_paired_difference_ci_p_and_dz():
    # d = [0.01, 0.03, 0.02, 0.04]: mean 0.025, sd = sqrt(((.015)² + (.005)² + (.005)² + (.015)²) / 3)
    a, b = [0.91, 0.93, 0.92, 0.94], [0.90, 0.90, 0.90, 0.90]
    sd = math.sqrt((0.015**2 + 0.005**2 + 0.005**2 + 0.015**2) / 3)
    c = stats.paired(a, b)
    se = sd / 2
    assert (c.test, c.n_pairs) == ("paired", 4)
    assert c.diff == pytest.approx(0.025)
    assert (c.diff_ci_low, c.diff_ci_high) == pytest.approx((0.025 - T975[3] * se, 0.025 + T975[3] * se), rel=1e-5)
    assert c.effect == pytest.approx(0.025 / sd)  # Cohen's d_z
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
    assert c.diff_ci_high - c.diff == pytest.approx(stats.t_quantile(df) * se)
    pooled = math.sqrt((1 * 0.0008 + 2 * 0.0001) / 3)
    assert c.effect == pytest.approx((1 - 3 / (4 * 5 - 9)) * 0.11 / pooled)  # Hedges' g = J·d


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
    assert math.isnan(single.p_value) and math.isnan(single.diff_ci_low)
    unshared = stats.compare({3: 0.95}, {0: 0.90, 1: 0.80})  # no pair: the difference of means
    assert (unshared.n_pairs, unshared.diff) == (0, pytest.approx(0.10))


def test_identical_differences_have_no_p_value():
    c = stats.paired([0.91, 0.92], [0.90, 0.91])
    assert c.diff == pytest.approx(0.01) and math.isnan(c.p_value) and math.isnan(c.effect)


def test_holm_by_hand():
    # Sorted: .01 (×4 = .04), .02 (×3 = .06), .03 (×2 = .06), .04 (×1, but not below .06) -> .06
    assert stats.holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # min(1, 2·0.4) = 0.8, then max(0.8, 0.5)
    assert stats.holm([0.9, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([math.nan, 0.01, 0.02])  # NaN neither adjusted nor counted: m = 2
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.02])

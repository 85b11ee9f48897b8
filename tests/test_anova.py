"""The statistics of all variants of a group at once against hand computations and statsmodels: Friedman,
the repeated-measures ANOVA (one-way and factorial, with Greenhouse–Geisser's ε), ranks and wins."""

import math

import numpy as np
import pandas as pd
import pytest
from record_fixtures import ACC
from scipy import stats as scipy_stats
from statsmodels.stats.anova import AnovaRM

from attnplace.report import anova


def test_friedman_by_hand():
    # R = (5.5, 8, 10.5): 12/(4·3·4)·(5.5² + 8² + 10.5²) − 3·4·4 = 51.125 − 48 = 3.125, divided by the
    # tie correction 1 − (2³ − 2)/(4·(3³ − 3)) = 0.9375: 3.3333; for 2 df, p = exp(−χ²/2).
    result = anova.friedman(ACC)
    assert result["friedman_chi2"] == pytest.approx(3.125 / 0.9375)
    assert (result["friedman_df"], result["friedman_p"]) == (2, pytest.approx(math.exp(-3.125 / 0.9375 / 2)))
    assert result["friedman_chi2"] == pytest.approx(scipy_stats.friedmanchisquare(*ACC.to_numpy()).statistic)


def test_omnibus_uses_the_seeds_every_variant_completed():
    acc = ACC.assign(**{"4": [0.5, np.nan, 0.5]}).reindex(["a", "b", "c", "none-completed"])
    result = anova.omnibus(acc)
    assert (result["k"], result["n_seeds"]) == (3, 4)  # seed 4 lacks b; a variant without runs is left out
    assert result["friedman_chi2"] == pytest.approx(anova.friedman(ACC)["friedman_chi2"])
    assert math.isnan(anova.omnibus(ACC[[0]])["friedman_p"])  # one complete seed: nothing to test


def test_repeated_measures_anova_by_hand():
    # Means: variants 2, 5, 5; seeds 2, 4, 6; grand 4. SS_v = 3·(4+1+1) = 18, SS_s = 3·(4+0+4) = 24,
    # SS_tot = 48, SS_e = 6: F = (18/2)/(6/4) = 6 on (2, 4) df, p = (1 + 2F/4)^(−2) = 1/16.
    table = pd.DataFrame([[1, 2, 3], [3, 4, 8], [2, 6, 7]], dtype=float)
    result = anova.rm_anova(table)
    assert (result["anova_f"], result["anova_df1"], result["anova_df2"]) == (pytest.approx(6), 2, 4)
    assert result["anova_p"] == pytest.approx(1 / 16)
    assert result["gg_epsilon"] == pytest.approx(1)  # residuals ±1 in every variant: sphericity holds
    # With two variants it is the paired t-test: F = t², ε = 1, the same p.
    t = scipy_stats.ttest_rel(ACC.loc["a"], ACC.loc["b"])
    two = anova.rm_anova(ACC.loc[["a", "b"]])
    assert (two["anova_f"], two["gg_epsilon"]) == (pytest.approx(t.statistic**2), pytest.approx(1))
    assert two["anova_p_gg"] == pytest.approx(t.pvalue)


def test_identical_variants_have_no_f_not_one_on_rounding_noise():
    """Two variants with the same float32 accuracy on every seed (as records hold them): no effect and no
    error, so F and p are undefined. Uncentred, the contrasts' rows sum to 1e-16 and gave F ≈ 37, p ≈ 0.009."""
    seeds = np.float32([0.8123, 0.7911, 0.8050, 0.7987]).astype(float)
    result = anova.rm_anova(pd.DataFrame([seeds, seeds]))
    assert math.isnan(result["anova_f"]) and math.isnan(result["anova_p"]) and math.isnan(result["partial_eta2"])
    crossed = pd.DataFrame([seeds] * 4, index=pd.MultiIndex.from_product([["p1", "p2"], ["mask", "mix"]],
                                                                        names=["pattern", "gate"]))
    assert anova.factorial(crossed, ["pattern", "gate"])["anova_f"].isna().all()


def test_greenhouse_geisser_epsilon_from_orthonormal_contrasts():
    """ε = (Σλ)²/((k−1)Σλ²), λ the eigenvalues of Cᵀ·Σ·C with C orthonormal contrasts (Helmert)."""
    table = pd.DataFrame([[0.90, 0.91, 0.93, 0.92, 0.95], [0.80, 0.91, 0.85, 0.97, 0.90],
                          [0.88, 0.90, 0.91, 0.89, 0.92]])
    helmert = np.array([[1, 1], [-1, 1], [0, -2]]) / np.array([math.sqrt(2), math.sqrt(6)])
    eigen = np.linalg.eigvalsh(helmert.T @ np.cov(table.to_numpy()) @ helmert)
    epsilon = eigen.sum() ** 2 / (2 * (eigen**2).sum())
    result = anova.rm_anova(table)
    assert result["gg_epsilon"] == pytest.approx(epsilon) and 0.5 <= epsilon < 0.9
    assert result["anova_p_gg"] == pytest.approx(scipy_stats.f.sf(result["anova_f"], 2 * epsilon, 8 * epsilon))


def test_mean_ranks_and_wins_split_ties():
    out = anova.ranks(ACC.reindex(["a", "b", "c", "no-runs"]))
    assert out.loc[["a", "b", "c"], "mean_rank"].tolist() == pytest.approx([5.5 / 4, 2, 10.5 / 4])
    assert out.loc[["a", "b", "c"], "wins"].tolist() == pytest.approx([2.5, 1, 0.5])  # s2: a and c share
    assert out.loc["no-runs"].isna().all()


def _long(acc: pd.DataFrame) -> pd.DataFrame:
    """A factorial's cells × seeds as statsmodels' long format: one row per cell and seed."""
    return acc.stack().rename("acc").rename_axis([*acc.index.names, "seed"]).reset_index()


def _random_cells(levels: dict, seeds: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product(list(levels.values()), names=list(levels))
    return pd.DataFrame(rng.normal(0.7, 0.02, (len(index), seeds)), index=index, columns=range(seeds))


def test_factorial_matches_statsmodels_anova_rm():
    acc = _random_cells({"pattern": ["p1", "p2", "p3", "p4"], "gate": ["mask", "near_identity"]}, seeds=5)
    got = anova.factorial(acc, ["pattern", "gate"]).set_index("effect")
    expected = AnovaRM(_long(acc), "acc", "seed", within=["pattern", "gate"]).fit().anova_table
    assert list(got.index) == ["pattern", "gate", "pattern × gate"]
    for effect, row in zip(got.index, expected.itertuples(index=False)):
        assert got.loc[effect, ["anova_f", "anova_df1", "anova_df2", "anova_p"]].tolist() == pytest.approx(list(row))
    assert got.loc["gate", "gg_epsilon"] == pytest.approx(1)  # one df: sphericity holds trivially
    assert 1 / 3 <= got.loc["pattern", "gg_epsilon"] <= 1  # its lower bound is 1/(a − 1)
    assert got["k"].eq(8).all() and got["n_seeds"].eq(5).all()
    three = _random_cells({"a": [0, 1], "b": [0, 1, 2], "c": [0, 1]}, seeds=4, seed=1)  # every interaction too
    got = anova.factorial(three, ["a", "b", "c"])
    expected = AnovaRM(_long(three), "acc", "seed", within=["a", "b", "c"]).fit().anova_table
    assert got["effect"].tolist() == ["a", "b", "c", "a × b", "a × c", "b × c", "a × b × c"]
    assert got.set_index("effect").loc[[i.replace(":", " × ") for i in expected.index], "anova_f"].tolist() == \
        pytest.approx(expected["F Value"].tolist())


def test_factorial_effects_are_paired_t_tests_on_a_2_by_2():
    """In a 2 × 2, each effect has one df and F = t² of a paired t-test: A on the means over B, B on the means
    over A, and the interaction on the difference of differences (a₁b₁ − a₁b₂) − (a₂b₁ − a₂b₂)."""
    acc = _random_cells({"a": ["x", "y"], "b": ["u", "v"]}, seeds=6, seed=2)
    got = anova.factorial(acc, ["a", "b"]).set_index("effect")
    over_b, over_a = acc.groupby(level="a").mean(), acc.groupby(level="b").mean()
    cell = acc.loc
    dd = (cell["x", "u"] - cell["x", "v"]) - (cell["y", "u"] - cell["y", "v"])
    for effect, t in (("a", scipy_stats.ttest_rel(over_b.loc["x"], over_b.loc["y"])),
                      ("b", scipy_stats.ttest_rel(over_a.loc["u"], over_a.loc["v"])),
                      ("a × b", scipy_stats.ttest_1samp(dd, 0))):
        assert got.loc[effect, "anova_f"] == pytest.approx(t.statistic**2)
        assert got.loc[effect, "anova_p_gg"] == pytest.approx(t.pvalue)
        partial = t.statistic**2 / (t.statistic**2 + 5)  # η²_p = F·df1 / (F·df1 + df2)
        assert got.loc[effect, "partial_eta2"] == pytest.approx(partial)


def test_a_factorial_main_effect_is_the_one_way_anova_of_the_means_over_the_other_factor():
    acc = _random_cells({"pattern": ["p1", "p2", "p3", "p4"], "gate": ["mask", "near_identity"]}, seeds=5, seed=3)
    got = anova.factorial(acc, ["pattern", "gate"]).set_index("effect").loc["pattern"]
    one_way = anova.rm_anova(acc.groupby(level="pattern", sort=False).mean())
    for column in ("anova_f", "anova_df1", "anova_df2", "anova_p", "gg_epsilon", "anova_p_gg"):
        assert got[column] == pytest.approx(one_way[column]), column


def test_factorial_uses_complete_seeds_and_is_blank_without_two():
    acc = _random_cells({"a": ["x", "y"], "b": ["u", "v"]}, seeds=4, seed=4)
    holey = acc.copy()
    holey.loc[("x", "u"), 3] = np.nan  # seed 3 is incomplete: left out everywhere
    assert anova.factorial(holey, ["a", "b"])["anova_f"].tolist() == \
        pytest.approx(anova.factorial(acc[[0, 1, 2]], ["a", "b"])["anova_f"].tolist())
    assert (anova.factorial(holey, ["a", "b"])["n_seeds"] == 3).all()
    missing = acc.drop(("y", "v"))  # a cell without runs: no complete seed
    assert anova.factorial(missing, ["a", "b"])[["anova_f", "anova_p"]].isna().all().all()
    assert anova.factorial(acc[[0]], ["a", "b"])["anova_p"].isna().all()

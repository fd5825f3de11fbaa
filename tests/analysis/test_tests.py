"""bench/analysis/tests.py: KS / Mann-Whitney / chi-square wrappers against scipy and brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.analysis.tests import categorical_tests, continuous_tests


def test_continuous_tests_match_scipy_and_brute_force_rank_biserial() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40), rng.normal(0.8, 1, 60)
    out = continuous_tests(np.append(a, np.nan), b)
    assert out["n"] == 40 and out["n_other"] == 60
    assert out["ks"]["statistic"] == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert out["mannwhitney"]["p"] == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
    # rank-biserial = P(a > b) - P(a < b) over all pairs
    diff = a[:, None] - b[None, :]
    assert out["mannwhitney"]["rank_biserial"] == pytest.approx((diff > 0).mean() - (diff < 0).mean())
    assert out["mannwhitney"]["rank_biserial"] < 0  # the subset is shifted down
    assert continuous_tests([1.0], b)["ks"] is None


def test_categorical_tests_match_scipy() -> None:
    cats = ("I-II", "III-IV", "V-VI")
    subset = ["I-II"] * 10 + ["III-IV"] * 5 + ["V-VI"] * 5
    other = ["I-II"] * 50 + ["III-IV"] * 10 + ["V-VI"] * 5 + [None]
    out = categorical_tests(subset, other, subset + other, cats)
    table = np.array([[10, 5, 5], [50, 10, 5]])
    ref = stats.chi2_contingency(table, correction=False)
    assert out["vs_complement"]["chi2"] == pytest.approx(ref.statistic) and out["vs_complement"]["dof"] == 2
    n = table.sum()
    assert out["vs_complement"]["cramers_v"] == pytest.approx(np.sqrt(ref.statistic / (n * 1)))
    full = table.sum(0)
    gof = stats.chisquare([10, 5, 5], full / full.sum() * 20)
    assert out["vs_full"]["p"] == pytest.approx(gof.pvalue)
    assert out["counts"] == {"I-II": 10, "III-IV": 5, "V-VI": 5}
    assert categorical_tests([], other, other, cats)["vs_complement"] is None

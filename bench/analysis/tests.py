"""Two-sample tests of the bias analysis (research ch5 section 2.3 step 4: the thesis names none).

Continuous attributes: Kolmogorov-Smirnov (``scipy.stats.ks_2samp``; effect size: the statistic D
itself) and Mann-Whitney U (``scipy.stats.mannwhitneyu``; effect size: the rank-biserial correlation
``r = 2 U1 / (n1 n2) - 1`` in [-1, 1], positive when the subset tends to larger values). Categorical
attributes: chi-square (``scipy.stats.chi2_contingency`` on subset vs complement counts; effect size
Cramer's V from ``scipy.stats.contingency.association``; against the full set, a goodness-of-fit test
``scipy.stats.chisquare`` of the subset counts on the full-set proportions).

Each subset S is compared with its complement (independent samples, the valid test) and with the
full set (what the thesis plots; S is part of the full set, so p-values of that comparison are
conservative and reported for completeness).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def continuous_tests(subset: Any, other: Any) -> dict[str, Any]:
    """KS and Mann-Whitney U of ``subset`` against ``other`` (1-D values; NaN dropped).

    Returns:
        ``{"n": n_subset, "n_other", "mean", "mean_other", "median", "median_other",
        "ks": {"statistic", "p"}, "mannwhitney": {"u", "p", "rank_biserial"}}``;
        the tests are None when either side has fewer than 2 values.
    """
    from scipy import stats

    a, b = _finite(subset), _finite(other)
    out: dict[str, Any] = {"n": int(a.size), "n_other": int(b.size),
                           "mean": float(a.mean()) if a.size else None, "mean_other": float(b.mean()) if b.size else None,
                           "median": float(np.median(a)) if a.size else None,
                           "median_other": float(np.median(b)) if b.size else None, "ks": None, "mannwhitney": None}
    if a.size < 2 or b.size < 2:
        return out
    ks = stats.ks_2samp(a, b)
    mw = stats.mannwhitneyu(a, b, alternative="two-sided")
    out["ks"] = {"statistic": float(ks.statistic), "p": float(ks.pvalue)}
    out["mannwhitney"] = {"u": float(mw.statistic), "p": float(mw.pvalue),
                          "rank_biserial": float(2.0 * mw.statistic / (a.size * b.size) - 1.0)}
    return out


def categorical_tests(subset: Sequence[Any], other: Sequence[Any], full: Sequence[Any],
                      categories: Sequence[str]) -> dict[str, Any]:
    """Chi-square tests of a categorical attribute: subset vs complement and subset vs full-set proportions.

    Args:
        subset, other, full: category labels (entries outside ``categories``, such as None or NaN, are dropped).
        categories: the category order (e.g. the three skin-tone groups).

    Returns:
        ``{"counts": {...}, "counts_other", "counts_full", "vs_complement": {"chi2", "p", "dof", "cramers_v"},
        "vs_full": {"chi2", "p"}}``; a test is None where it is undefined (a side is empty, or fewer than
        two categories occur).
    """
    from scipy import stats
    from scipy.stats.contingency import association

    def count(values: Sequence[Any]) -> np.ndarray:
        vals = [v for v in values if v in categories]  # None / NaN (undefined ITA) dropped
        return np.array([sum(v == c for v in vals) for c in categories], dtype=np.int64)

    cs, co, cf = count(subset), count(other), count(full)
    out: dict[str, Any] = {"counts": dict(zip(categories, cs.tolist())), "counts_other": dict(zip(categories, co.tolist())),
                           "counts_full": dict(zip(categories, cf.tolist())), "vs_complement": None, "vs_full": None}
    table = np.stack([cs, co])
    used = table.sum(0) > 0
    if cs.sum() > 0 and co.sum() > 0 and used.sum() >= 2:
        t = table[:, used]
        res = stats.chi2_contingency(t, correction=False)
        out["vs_complement"] = {"chi2": float(res.statistic), "p": float(res.pvalue), "dof": int(res.dof),
                                "cramers_v": float(association(t, method="cramer", correction=False))}
    present = cf > 0
    if cs.sum() > 0 and present.sum() >= 2:
        expected = cf[present] / cf[present].sum() * cs.sum()
        res = stats.chisquare(cs[present], expected)
        out["vs_full"] = {"chi2": float(res.statistic), "p": float(res.pvalue)}
    return out

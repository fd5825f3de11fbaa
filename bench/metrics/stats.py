"""Statistics over scores: paired t-test, bootstrap confidence intervals, gains.

- `paired_ttest` wraps ``scipy.stats.ttest_rel`` (thesis chapter 4 reports
  classification p = 1.35e-3 and segmentation p = 6.64e-29 from it).
- `bootstrap_ci` wraps ``scipy.stats.bootstrap``.
- `relative_gain` is the papers' "improvement %": the mean over models of
  aug_m / orig_m - 1 (thesis chapter 5: +18.09 % IoU on S_0.6 averaged over three
  segmenters), returned as a fraction (0.1809), not a percentage.
  `relative_gain_or_none` is the same but gives None (reported "undefined") where a
  baseline score is 0, as a run's untrained real-only arm can score.
- `absolute_gain` is the mean of aug_m - orig_m (MedDiff-FT Table 1: +0.95 and
  +2.16 average Dice points over 20 model x dataset cells).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ArrayLike = Any  # Sequence[float] | np.ndarray | torch.Tensor


def _to_1d(values: ArrayLike, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def paired_ttest(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> dict[str, float]:
    """Paired (related-samples) t-test of ``a`` against ``b`` via ``scipy.stats.ttest_rel``.

    Args:
        a: scores of condition A, shape (n,), e.g. per-image Dice of the augmented model.
        b: scores of condition B on the same units, shape (n,), e.g. the original model.
        alternative: ``"two-sided"`` (thesis default), ``"greater"`` or ``"less"``
            (A greater/less than B).

    Returns:
        ``{"t": t statistic, "p": p-value, "n": n, "mean_diff": mean(a - b)}``.
        Degenerate case: when every difference a_i - b_i is zero (identical inputs)
        scipy returns NaN; we return ``t = 0.0, p = 1.0`` instead (no evidence of a
        difference), so records stay JSON-valid. A constant non-zero difference is
        left to scipy (|t| = inf, p = 0).

    Raises:
        ValueError: if the lengths differ or n < 2.
    """
    from scipy import stats

    x, y = _to_1d(a, "a"), _to_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired_ttest needs equal lengths, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"paired_ttest needs at least 2 pairs, got {x.size}")
    diff = x - y
    mean_diff = float(diff.mean())
    if np.all(diff == 0):
        return {"t": 0.0, "p": 1.0, "n": int(x.size), "mean_diff": 0.0}
    res = stats.ttest_rel(x, y, alternative=alternative)
    return {"t": float(res.statistic), "p": float(res.pvalue), "n": int(x.size), "mean_diff": mean_diff}


def _paired_values(aug: ArrayLike | Mapping[str, float], orig: ArrayLike | Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(aug, Mapping) or isinstance(orig, Mapping):
        if not (isinstance(aug, Mapping) and isinstance(orig, Mapping)):
            raise TypeError("pass both aug and orig as dicts keyed by model, or both as sequences")
        if set(aug) != set(orig):
            raise ValueError(f"aug and orig name different models: {sorted(aug)} vs {sorted(orig)}")
        keys = sorted(aug)
        return _to_1d([aug[k] for k in keys], "aug"), _to_1d([orig[k] for k in keys], "orig")
    x, y = _to_1d(aug, "aug"), _to_1d(orig, "orig")
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"aug and orig need the same non-zero length, got {x.size} and {y.size}")
    return x, y


def relative_gain(aug: ArrayLike | Mapping[str, float], orig: ArrayLike | Mapping[str, float]) -> float:
    """Mean over models of the relative improvement, ``mean_m(aug_m / orig_m - 1)``.

    This is the papers' "improvement %" as a fraction (multiply by 100 to print).
    Note it averages per-model ratios; it is not ``mean(aug) / mean(orig) - 1``.

    Args:
        aug: score of each model trained with synthetic data, shape (M,), or a dict
            model -> score.
        orig: score of the same models without synthetic data, same layout.

    Returns:
        The mean relative gain (e.g. 0.1809 for +18.09 %).

    Raises:
        ValueError: on mismatched models or a zero baseline score.
    """
    x, y = _paired_values(aug, orig)
    if np.any(y == 0):
        raise ValueError("relative_gain is undefined for a baseline score of 0")
    return float(np.mean(x / y - 1.0))


def relative_gain_or_none(aug: ArrayLike | Mapping[str, float], orig: ArrayLike | Mapping[str, float]) -> float | None:
    """`relative_gain`, or None when a baseline score is 0 (the gain is undefined, not an error of the run)."""
    x, y = _paired_values(aug, orig)
    return None if np.any(y == 0) else float(np.mean(x / y - 1.0))


def relative_gain_over_defined(aug: Mapping[str, float], orig: Mapping[str, float]) -> float | None:
    """`relative_gain` over the models where it is defined: a finite ``aug`` score over a non-zero ``orig`` one (a
    pretrained segmenter can score 0, and a model with an empty subset has no score); None when no model is left.
    lowcontrast's "improvement %" (the thesis leaves such models out)."""
    keep = [m for m in aug if m in orig and aug[m] is not None and math.isfinite(aug[m]) and orig[m]]
    return relative_gain({m: aug[m] for m in keep}, {m: orig[m] for m in keep}) if keep else None


def absolute_gain(aug: ArrayLike | Mapping[str, float], orig: ArrayLike | Mapping[str, float]) -> float:
    """Mean over models (or cells) of ``aug_m - orig_m``, in the scores' own units.

    MedDiff-FT's "+0.95 Dice on average" is this quantity over its 20 model x dataset
    cells, in Dice percentage points.
    """
    x, y = _paired_values(aug, orig)
    return float(np.mean(x - y))


def t_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (``scipy.stats.t.interval`` with the standard error):
    the interval for a mean over a few seeds, where a bootstrap over 3 values would be meaningless.

    Raises:
        ValueError: if there are fewer than 2 values or ``level`` is outside (0, 1).
    """
    from scipy import stats

    arr = _to_1d(values, "values")
    if arr.size < 2:
        raise ValueError(f"t_interval needs at least 2 values, got {arr.size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(arr.mean())
    if np.all(arr == arr[0]):
        return mean, mean
    low, high = stats.t.interval(level, arr.size - 1, loc=mean, scale=stats.sem(arr))
    return float(low), float(high)


def bootstrap_ci(
    values: ArrayLike,
    stat: Callable[..., float] = np.mean,
    n: int = 9999,
    seed: int = 0,
    level: float = 0.95,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap confidence interval of ``stat(values)`` via ``scipy.stats.bootstrap``.

    Args:
        values: per-unit scores (e.g. per-image Dice), shape (n_units,), n_units >= 2.
        stat: statistic of a 1-D array; if it accepts ``axis=`` (numpy reductions do)
            it is evaluated vectorised.
        n: number of bootstrap resamples.
        seed: seed of the resampling generator (same seed -> same interval).
        level: confidence level in (0, 1).
        method: ``"percentile"`` (default: defined even for constant data),
            ``"basic"`` or ``"BCa"`` (scipy's default, NaN on degenerate data).

    Returns:
        ``(low, high)`` bounds of the interval.
    """
    from scipy import stats

    arr = _to_1d(values, "values")
    if arr.size < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 values, got {arr.size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if np.all(arr == arr[0]):
        value = float(stat(arr))
        return value, value
    vectorized = stat in (np.mean, np.median, np.std, np.var, np.sum, np.min, np.max)
    res = stats.bootstrap(
        (arr,),
        stat,
        n_resamples=n,
        confidence_level=level,
        method=method,
        vectorized=vectorized,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)

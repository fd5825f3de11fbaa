import numpy as np
import pytest
from scipy import stats

from bench.metrics.stats import absolute_gain, bootstrap_ci, paired_ttest, relative_gain, relative_gain_over_defined


def test_paired_ttest_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30) + 0.2
    out = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert out["t"] == pytest.approx(ref.statistic, abs=1e-12)
    assert out["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert out["n"] == 30 and out["mean_diff"] == pytest.approx(np.mean(a - b))
    assert paired_ttest(a, b, alternative="less")["p"] == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)


def test_paired_ttest_degenerate_and_errors():
    assert paired_ttest([0.5, 0.7, 0.9], [0.5, 0.7, 0.9]) == {"t": 0.0, "p": 1.0, "n": 3, "mean_diff": 0.0}
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1.0], [2.0])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_ttest([1.0, 2.0], [2.0, 3.0, 4.0])


def test_relative_gain_hand_computed_and_dict():
    assert relative_gain([1.1, 0.9], [1.0, 1.0]) == pytest.approx(0.0)
    assert relative_gain({"a": 2.0, "b": 3.0}, {"b": 2.0, "a": 1.0}) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError):
        relative_gain([1.0], [0.0])


def test_relative_gain_over_defined_leaves_out_models_where_it_is_undefined():
    """lowcontrast's rule (chapter 5, seed 2: the pretrained FAT-Net scores Dice 0): a model whose reference is 0 or
    whose own score is NaN is left out; with none left the gain is None."""
    got = relative_gain_over_defined({"a": 2.0, "b": 3.0, "c": 0.5, "d": float("nan")},
                                     {"a": 1.0, "b": 2.0, "c": 0.0, "d": 0.4})
    assert got == pytest.approx((1.0 + 0.5) / 2)
    assert relative_gain_over_defined({"c": 0.5}, {"c": 0.0}) is None


def test_chapter5_s06_gains_recompute():
    # Table 5.3, S_0.6, Pretrained -> Mine for AttenU-Net, DCSAU-Net, FAT-Net
    iou = relative_gain([0.447, 0.437, 0.472], [0.381, 0.376, 0.391])
    dice = relative_gain([0.595, 0.575, 0.615], [0.530, 0.518, 0.541])
    assert round(100 * iou, 2) == 18.09
    assert abs(100 * dice - 12.31) < 0.015  # the spec computes 12.32 from the rounded table values


def test_meddiff_ft_average_dice_gain_recompute():
    # MedDiff-FT Table 1 (Dice), columns PH2, ISIC17, ISIC18, BUSI, DDTI; rows UPerNet, DLV3+, Swin, nnU-Net
    orig = [88.97, 83.05, 85.01, 66.72, 79.89, 88.1, 83.84, 86.67, 70.55, 77.18,
            89.46, 81.19, 86.03, 59.55, 74.03, 94.26, 83.77, 87.43, 77.01, 79.45]
    p1500 = [92.04, 83.37, 86.39, 66.76, 77.96, 89.04, 84.11, 87.19, 73.08, 78.84,
             91.38, 81.57, 86.68, 62.38, 74.78, 94.75, 84.17, 88.06, 78.1, 80.51]
    p2750 = [91.47, 83.45, 87.32, 71.54, 82.34, 89.53, 84.7, 87.87, 74.05, 83.01,
             92.16, 84.28, 86.55, 63.63, 75.22, 94.72, 84.92, 88.15, 78.69, 81.67]
    assert round(absolute_gain(p1500, orig), 2) == 0.95
    assert round(absolute_gain(p2750, orig), 2) == 2.16


def test_bootstrap_ci_matches_scipy_and_is_seeded():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    low, high = bootstrap_ci(x, n=999, seed=7)
    ref = stats.bootstrap((x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(7))
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=1e-12)
    assert low < x.mean() < high
    assert bootstrap_ci(x, n=999, seed=7) == (low, high)
    # a non-vectorised statistic
    lo2, hi2 = bootstrap_ci(x, stat=lambda v: float(np.percentile(v, 75)), n=199, seed=1)
    assert lo2 <= hi2
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0])


def test_t_interval_matches_scipy_and_refuses_one_value():
    from bench.metrics.stats import t_interval

    values = [0.012, -0.004, 0.021]
    want = stats.t.interval(0.9, 2, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values, level=0.9) == pytest.approx(want)
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.1])

"""bench/leaderboard/ranking.py: gains with bootstrap intervals, on per-image scores and on per-image classes."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from bench.leaderboard.ranking import bootstrap_balanced_gain, bootstrap_gain, entry_gain
from bench.metrics.classification import stacked_balanced_accuracy
from bench.leaderboard.submit import default_leaderboard_dir


def test_balanced_accuracy_is_sklearns_on_every_resample():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(5, 40))
    preds = rng.integers(0, 4, size=(5, 3, 40))
    ours = stacked_balanced_accuracy(labels, preds == labels[:, None, :])
    expected = [[balanced_accuracy_score(labels[d], preds[d, m]) for m in range(3)] for d in range(5)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_balanced_gain_interval_holds_the_point_and_is_zero_for_identical_arms():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    a = rng.random((2, 60)) < 0.7
    point, low, high = bootstrap_balanced_gain([(labels, a, a)], n=200)
    assert (point, low, high) == (0.0, 0.0, 0.0)
    better = a | (rng.random((2, 60)) < 0.3)
    point, low, high = bootstrap_balanced_gain([(labels, better, a)], n=200)
    assert 0 < low <= point <= high


def test_mean_metric_intervals_are_unchanged_by_the_shared_bootstrap():
    """The per-image-score path draws the same resamples as before the balanced-accuracy path shared its loop."""
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 30)) + 0.5, rng.random((2, 30)) + 0.5
    point, low, high = bootstrap_gain([(a, b)], n=500, seed=0)
    draws = np.random.default_rng(0).integers(0, 30, size=(500, 30))
    gains = (a[:, draws].mean(-1) / b[:, draws].mean(-1) - 1).mean(0)
    assert point == pytest.approx(float(((a.mean(1) / b.mean(1)) - 1).mean()))
    assert (low, high) == pytest.approx(tuple(np.nanpercentile(gains, [2.5, 97.5])))


def test_a_derm_cls_entry_gets_its_balanced_accuracy_gain_with_an_interval():
    """The shipped world-oracle derm-cls records: the point gain is the records' own (per-model values), over seeds."""
    import json

    from bench.metrics.stats import relative_gain

    folder = default_leaderboard_dir()
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("derm-cls__world-oracle__*.json"))]
    assert runs
    gain = entry_gain(runs, "balanced_accuracy", lambda r: folder / r["per_sample_file"])
    stated = np.mean([relative_gain({m: v["balanced_accuracy"] for m, v in r["per_model"].items()},
                                    {m: v["balanced_accuracy"] for m, v in r["comparisons"]["reference_per_model"].items()})
                      for r in runs])
    assert gain is not None and gain.value == pytest.approx(stated) and gain.low < gain.value < gain.high
    assert gain.p is None and gain.n_seeds == len(runs)

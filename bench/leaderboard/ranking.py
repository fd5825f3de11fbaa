"""A ranking a reader can use: per entry the gain over real-only with a 95 % bootstrap CI and the paired-test p.

The gain is the papers' relative gain (mean over downstream models of ``method_m / real_only_m - 1``). Its CI comes
from the per-sample scores: test images are resampled with replacement (the same images for every model and both
arms, so the pairing is kept), the gain is recomputed on each resample, and the 2.5 / 97.5 percentiles are taken.
With several seeds the seeds' gains are averaged on each resample.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Gain:
    value: float
    low: float
    high: float
    p: float | None
    n_seeds: int


def _arms(csv_path: Path, metric: str, arm: str, reference: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(method, reference) score matrices of shape (models, images), images in the same order, or None."""
    scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    with Path(csv_path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("split", "test") != "test" or metric not in row:
                continue
            try:
                scores[row["arm"]][row["model"]][row["id"]] = float(row[metric])
            except (KeyError, ValueError):
                return None
    mine, ref = scores.get(arm), scores.get(reference)
    if not mine or not ref or set(mine) != set(ref):
        return None
    models = sorted(mine)
    ids = sorted(set.intersection(*(set(mine[m]) & set(ref[m]) for m in models)))
    if len(ids) < 2:
        return None
    return (np.array([[mine[m][i] for i in ids] for m in models]), np.array([[ref[m][i] for i in ids] for m in models]))


def _gain(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Relative gain over models for stacked resamples: a, b of shape (..., models, images)."""
    ma, mb = a.mean(axis=-1), b.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ma / mb - 1).mean(axis=-1)


def bootstrap_gain(pairs: list[tuple[np.ndarray, np.ndarray]], n: int = N_BOOTSTRAP,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(gain, 2.5 %, 97.5 %) of the mean relative gain over seeds, images resampled within each seed."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([_gain(a, b) for a, b in pairs]))
    draws = np.zeros(n)
    for a, b in pairs:
        idx = rng.integers(0, a.shape[1], size=(n, a.shape[1]))
        draws += _gain(a[:, idx].transpose(1, 0, 2), b[:, idx].transpose(1, 0, 2))
    draws /= len(pairs)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return point, float(low), float(high)


def entry_gain(runs: list[dict[str, Any]], metric: str, csv_of: Any) -> Gain | None:
    """The gain of one leaderboard entry (its records over seeds) on ``metric``, or None when the records do not
    carry the per-sample scores of both arms (the reference arm itself, tasks without a real-only arm)."""
    from bench.registry import TASKS

    spec = getattr(TASKS.get(runs[0]["task"]["id"]), "sample_scores", None)
    if spec is None or metric not in spec.columns or runs[0]["method"]["id"] == spec.reference_arm:
        return None
    pairs = []
    for rec in runs:
        path = csv_of(rec)
        arms = _arms(path, metric, spec.arm, spec.reference_arm) if path is not None else None
        if arms is None:
            return None
        pairs.append(arms)
    if any((b.mean(axis=1) == 0).any() for _, b in pairs):
        return None  # a reference model scoring 0: the relative gain is undefined (the record says None)
    value, low, high = bootstrap_gain(pairs)
    ps = [((r.get("comparisons") or {}).get("paired_ttest") or {}).get(metric, {}).get("p") for r in runs]
    ps = [p for p in ps if isinstance(p, (int, float))]
    return Gain(value, low, high, float(np.median(ps)) if ps else None, len(runs))

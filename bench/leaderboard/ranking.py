"""A ranking a reader can use: per entry the gain over real-only with a 95 % bootstrap CI and the paired-test p.

The gain is the papers' relative gain (mean over downstream models of ``method_m / real_only_m - 1``). Its CI comes
from the per-sample scores: test images are resampled with replacement (the same images for every model and both
arms, so the pairing is kept), the gain is recomputed on each resample, and the 2.5 / 97.5 percentiles are taken.
With several seeds the seeds' gains are averaged on each resample.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics.classification import stacked_balanced_accuracy

N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Gain:
    value: float
    low: float
    high: float
    p: float | None
    n_seeds: int


def _paired_rows(csv_path: Path, fields: tuple[str, ...], arm: str, reference: str
                 ) -> tuple[list[str], list[str], dict[str, dict[str, tuple[str, ...]]], dict[str, dict[str, tuple[str, ...]]]] | None:
    """The test rows of both arms as model -> id -> the ``fields`` values, with the models and the ids both arms
    hold (sorted); None when a column is missing, the arms' models differ or fewer than two ids are shared."""
    rows: dict[str, dict[str, dict[str, tuple[str, ...]]]] = defaultdict(lambda: defaultdict(dict))
    with Path(csv_path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("split", "test") != "test" or any(f not in row for f in fields):
                continue
            try:
                rows[row["arm"]][row["model"]][row["id"]] = tuple(row[f] for f in fields)
            except KeyError:
                return None
    mine, ref = rows.get(arm), rows.get(reference)
    if not mine or not ref or set(mine) != set(ref):
        return None
    models = sorted(mine)
    ids = sorted(set.intersection(*(set(mine[m]) & set(ref[m]) for m in models)))
    return (models, ids, mine, ref) if len(ids) >= 2 else None


def _arms(csv_path: Path, metric: str, arm: str, reference: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(method, reference) score matrices of shape (models, images), images in the same order, or None."""
    paired = _paired_rows(csv_path, (metric,), arm, reference)
    if paired is None:
        return None
    models, ids, mine, ref = paired
    try:
        return tuple(np.array([[float(rows[m][i][0]) for i in ids] for m in models]) for rows in (mine, ref))
    except ValueError:
        return None


def _confusion_arms(csv_path: Path, label: str, pred: str, arm: str, reference: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(labels, method correct, reference correct) of a confusion-matrix task's test rows: labels (images,),
    correct (models, images) as booleans, images in the same order; None when the arms do not match."""
    paired = _paired_rows(csv_path, (label, pred), arm, reference)
    if paired is None:
        return None
    models, ids, mine, ref = paired
    if any(mine[m][i][0] != ref[m][i][0] for m in models for i in ids):
        return None
    labels = np.array([mine[models[0]][i][0] for i in ids])
    correct = [np.array([[rows[m][i][1] == rows[m][i][0] for i in ids] for m in models]) for rows in (mine, ref)]
    return labels, correct[0], correct[1]


def _gain(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Relative gain over models for stacked resamples: a, b of shape (..., models, images)."""
    ma, mb = a.mean(axis=-1), b.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ma / mb - 1).mean(axis=-1)


def _bootstrap(gain_of: list[Callable[[np.ndarray], np.ndarray]], sizes: list[int], n: int,
               seed: int) -> tuple[float, float, float]:
    """(gain, 2.5 %, 97.5 %) over seeds: ``gain_of[k](idx)`` is seed k's gain for image resamples ``idx`` of shape
    (draws, images); the point value uses every image once."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([fn(np.arange(size)[None])[0] for fn, size in zip(gain_of, sizes)]))
    draws = np.zeros(n)
    for fn, size in zip(gain_of, sizes):
        draws += fn(rng.integers(0, size, size=(n, size)))
    draws /= len(gain_of)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return point, float(low), float(high)


def bootstrap_gain(pairs: list[tuple[np.ndarray, np.ndarray]], n: int = N_BOOTSTRAP,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(gain, 2.5 %, 97.5 %) of the mean relative gain over seeds, images resampled within each seed."""
    def gain_of(a: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda idx: _gain(a[:, idx].transpose(1, 0, 2), b[:, idx].transpose(1, 0, 2))

    return _bootstrap([gain_of(a, b) for a, b in pairs], [a.shape[1] for a, _ in pairs], n, seed)


def bootstrap_balanced_gain(triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int = N_BOOTSTRAP,
                            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """`bootstrap_gain` of balanced accuracy, from (labels, method correct, reference correct) per seed: a resample
    draws images with their labels, and each classifier's per-class recalls are recomputed on it."""
    def gain_of(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def gain(idx: np.ndarray) -> np.ndarray:
            drawn = labels[idx]
            mine = stacked_balanced_accuracy(drawn, a[:, idx].transpose(1, 0, 2))
            ref = stacked_balanced_accuracy(drawn, b[:, idx].transpose(1, 0, 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                return (mine / ref - 1).mean(axis=-1)
        return gain

    return _bootstrap([gain_of(*t) for t in triples], [len(t[0]) for t in triples], n, seed)


def entry_gain(runs: list[dict[str, Any]], metric: str, csv_of: Any) -> Gain | None:
    """The gain of one leaderboard entry (its records over seeds) on ``metric``, or None when the records do not
    carry the per-sample scores of both arms (the reference arm itself, tasks without a real-only arm)."""
    from bench.registry import TASKS

    spec = getattr(TASKS.get(runs[0]["task"]["id"]), "sample_scores", None)
    if spec is None or runs[0]["method"]["id"] == spec.reference_arm:
        return None
    if metric == "balanced_accuracy" and spec.confusion is not None:
        return _balanced_entry_gain(runs, spec, csv_of)
    if metric not in spec.columns:
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


def _balanced_entry_gain(runs: list[dict[str, Any]], spec: Any, csv_of: Any) -> Gain | None:
    """`entry_gain` of balanced accuracy for a task scored by per-image classes (derm-cls): no paired test is
    stated for it, so ``p`` is None."""
    triples = []
    for rec in runs:
        path = csv_of(rec)
        arms = _confusion_arms(path, *spec.confusion, spec.arm, spec.reference_arm) if path is not None else None
        if arms is None:
            return None
        triples.append(arms)
    value, low, high = bootstrap_balanced_gain(triples)
    return Gain(value, low, high, None, len(runs))

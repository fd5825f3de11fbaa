"""Classification metrics (thesis chapter 4 Tables 4.2-4.4, chapter 6 Table 6.2).

Wraps scikit-learn. The thesis' "micro" precision/recall/F1 are in fact
support-weighted (sklearn ``average="weighted"``; research ch4 section 3.2: the
weighted mean of Table 4.3's class-wise F1 reproduces Table 4.2), so the headline
keys are ``precision_weighted``, ``recall_weighted``, ``f1_weighted``; macro,
class-wise F1, accuracy and balanced accuracy are reported alongside.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from bench.metrics.base import BenchMetric

logger = logging.getLogger(__name__)


def _labels_1d(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {arr.shape}")
    return arr


def classification_scores(
    y_true: Any,
    y_pred: Any,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Weighted and macro P/R/F1, class-wise F1, accuracy and balanced accuracy.

    Args:
        y_true: true class indices, shape (N,).
        y_pred: predicted class indices, shape (N,).
        labels: the class indices to score (default: all seen in y_true or y_pred);
            pass the full class list so an absent class still counts in macro F1.
        class_names: names for the class-wise keys ``f1[<name>]`` (default: the index),
            same length as ``labels``.

    Returns:
        ``precision_weighted, recall_weighted, f1_weighted, precision_macro,
        recall_macro, f1_macro, accuracy, balanced_accuracy`` and ``f1[<class>]``,
        all in [0, 1]. Zero divisions (a class never predicted) count as 0.
    """
    from sklearn import metrics

    t, p = _labels_1d(y_true, "y_true"), _labels_1d(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred need the same non-zero length, got {t.size} and {p.size}")
    labs = list(labels) if labels is not None else sorted(set(t.tolist()) | set(p.tolist()))
    names = [str(n) for n in class_names] if class_names is not None else [str(lab) for lab in labs]
    if len(names) != len(labs):
        raise ValueError(f"{len(class_names or [])} class_names for {len(labs)} labels")
    out: dict[str, float] = {}
    for avg in ("weighted", "macro"):
        prec, rec, f1, _ = metrics.precision_recall_fscore_support(t, p, labels=labs, average=avg, zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(prec), float(rec), float(f1)
    per_class = metrics.f1_score(t, p, labels=labs, average=None, zero_division=0)
    for name, value in zip(names, per_class):
        out[f"f1[{name}]"] = float(value)
    out["accuracy"] = float(metrics.accuracy_score(t, p))
    present = [lab for lab in labs if np.any(t == lab)]
    # balanced accuracy = mean recall over the classes present in y_true (sklearn's definition)
    out["balanced_accuracy"] = float(metrics.recall_score(t, p, labels=present, average="macro", zero_division=0))
    return out


def stacked_balanced_accuracy(labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """`classification_scores`' balanced accuracy (mean recall over the classes present in ``labels``) for many label
    draws at once, as a bootstrap needs: labels (draws, images), correct (draws, models, images) as booleans ->
    (draws, models)."""
    recalls = []
    for c in np.unique(labels):
        mask = (labels == c)[:, None, :]
        count = mask.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            recalls.append(np.where(count > 0, (correct & mask).sum(axis=-1) / count, np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def support_weighted_mean(per_class: Mapping[str, float] | Sequence[float], support: Mapping[str, int] | Sequence[int]) -> float:
    """Support-weighted mean of class-wise scores, ``sum_c n_c s_c / sum_c n_c``.

    This is what sklearn's ``average="weighted"`` computes from class-wise scores;
    with Table 4.3's class-wise F1 and the ISIC 2018 Task 3 test support it
    recomputes Table 4.2's F1.
    """
    if isinstance(per_class, Mapping):
        if not isinstance(support, Mapping) or set(per_class) != set(support):
            raise ValueError("per_class and support must name the same classes")
        keys = list(per_class)
        scores = np.array([per_class[k] for k in keys], dtype=np.float64)
        weights = np.array([support[k] for k in keys], dtype=np.float64)
    else:
        scores = np.asarray(per_class, dtype=np.float64)
        weights = np.asarray(support, dtype=np.float64)
    if scores.shape != weights.shape or weights.sum() <= 0:
        raise ValueError("per_class and support need the same length and a positive total support")
    return float(np.sum(scores * weights) / weights.sum())


def auroc(y_true: Any, scores: Any, average: str = "macro") -> float:
    """AUROC via ``sklearn.metrics.roc_auc_score``.

    Args:
        y_true: shape (N,): 0/1 for the binary case, class indices for multi-class.
        scores: binary: shape (N,) scores of the positive class (any monotone score,
            e.g. torchxrayvision's calibrated output, chapter 6 Table 6.2);
            multi-class: shape (N, C) class probabilities (rows summing to 1),
            scored one-vs-rest.
        average: averaging of the one-vs-rest AUROCs (``"macro"`` or ``"weighted"``).

    Returns:
        AUROC in [0, 1].

    Raises:
        ValueError: if y_true holds a single class (AUROC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    t = _labels_1d(y_true, "y_true")
    s = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    if np.unique(t).size < 2:
        raise ValueError("AUROC is undefined when y_true holds a single class; the sub-test set needs positives and negatives")
    if s.ndim == 1:
        return float(roc_auc_score(t, s))
    if s.ndim == 2 and s.shape[1] == 2 and set(np.unique(t).tolist()) <= {0, 1}:
        return float(roc_auc_score(t, s[:, 1]))
    return float(roc_auc_score(t, s, multi_class="ovr", average=average, labels=list(range(s.shape[1]))))


def auroc_positive_vs_negative(positive_scores: Any, negative_scores: Any) -> float:
    """Binary AUROC of one pathology's sub-test set (chapter 6 Table 6.2).

    Args:
        positive_scores: classifier score for the pathology on images generated with
            it (y = 1), shape (P,).
        negative_scores: the same output on the No-Finding images (y = 0), shape (Q,).
    """
    pos = np.asarray(positive_scores.detach().cpu() if hasattr(positive_scores, "detach") else positive_scores, np.float64).ravel()
    neg = np.asarray(negative_scores.detach().cpu() if hasattr(negative_scores, "detach") else negative_scores, np.float64).ravel()
    y = np.concatenate([np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)])
    return auroc(y, np.concatenate([pos, neg]))


class ClassificationMetrics(BenchMetric):
    """Accumulate predictions batch by batch; ``compute()`` = `classification_scores`.

    ``update(y_true, y_pred)`` takes class indices of shape (N,).
    """

    higher_is_better: ClassVar[bool | None] = True
    display_name: ClassVar[str] = "Classification (P/R/F1)"
    lower_bound: ClassVar[float | None] = 0.0
    upper_bound: ClassVar[float | None] = 1.0

    def __init__(self, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None) -> None:
        self.labels = labels
        self.class_names = class_names
        super().__init__()

    def reset(self) -> None:
        self._true: list[np.ndarray] = []
        self._pred: list[np.ndarray] = []

    def update(self, y_true: Any, y_pred: Any) -> None:  # type: ignore[override]
        self._true.append(_labels_1d(y_true, "y_true"))
        self._pred.append(_labels_1d(y_pred, "y_pred"))

    def compute(self) -> dict[str, float]:
        if not self._true:
            raise RuntimeError("ClassificationMetrics.compute() called before any update()")
        return classification_scores(np.concatenate(self._true), np.concatenate(self._pred), self.labels, self.class_names)

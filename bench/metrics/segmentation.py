"""Per-image Dice and IoU on binary masks, and the poorly-segmented subsets S_x.

Thesis chapter 4 (Tables 4.5-4.7) and chapter 5 (low-contrast subsets S_0.8, S_0.6,
S_0.4) score segmenters with per-image Dice and IoU averaged over the test set:

    Dice(P, T) = 2 |P n T| / (|P| + |T|),      IoU(P, T) = |P n T| / |P u T|

with the convention Dice = IoU = 1 when both masks are empty (nothing to find,
nothing predicted). torchmetrics' binary Dice/JaccardIndex aggregate over the whole
batch, not per image, so the per-image form is written here and tested against
sklearn's f1_score / jaccard_score on each image.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.metrics.base import BenchMetric

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)


def _as_batch(mask: Any, name: str) -> Tensor:
    import torch

    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            raise TypeError(f"{name} must be a bool (or 0/1 integer) mask, got dtype {mask.dtype}; threshold it first")
        if mask.numel() and (mask.min() < 0 or mask.max() > 1):
            raise ValueError(f"{name} holds values outside {{0, 1}}; pass a binary mask")
        mask = mask.bool()
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (H, W), got {tuple(mask.shape)}")
    return mask


def dice_iou(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image Dice and IoU of binary masks.

    Args:
        pred: predicted masks, bool (or 0/1 integer), shape (N, H, W) or (H, W).
        target: ground-truth masks, same shape as ``pred``.

    Returns:
        ``(dice, iou)``, each float64 of shape (N,) with values in [0, 1]; a (H, W)
        input gives shape (1,). An empty prediction of an empty target scores 1.0 on
        both.

    Example:
        >>> import torch
        >>> p = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
        >>> t = torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)
        >>> dice_iou(p, t)
        (tensor([0.6667], dtype=torch.float64), tensor([0.5000], dtype=torch.float64))
    """
    import torch

    pred_b, target_b = _as_batch(pred, "pred"), _as_batch(target, "target")
    if pred_b.shape != target_b.shape:
        raise ValueError(f"pred shape {tuple(pred_b.shape)} != target shape {tuple(target_b.shape)}")
    p = pred_b.flatten(1)
    t = target_b.flatten(1)
    inter = (p & t).sum(1).to(torch.float64)
    size_p = p.sum(1).to(torch.float64)
    size_t = t.sum(1).to(torch.float64)
    union = size_p + size_t - inter
    both_empty = union == 0
    denom_dice = torch.where(both_empty, torch.ones_like(union), size_p + size_t)
    denom_iou = torch.where(both_empty, torch.ones_like(union), union)
    dice = torch.where(both_empty, torch.ones_like(union), 2.0 * inter / denom_dice)
    iou = torch.where(both_empty, torch.ones_like(union), inter / denom_iou)
    return dice, iou


def precision_recall(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image pixel-wise precision TP / (TP + FP) and recall TP / (TP + FN) of binary masks (DiffBoost Table II,
    spec C.1), averaged over images like Dice.

    Empty-mask convention, in line with `dice_iou` (empty on empty = 1): precision is 1 when nothing is predicted on
    an empty target and 0 when nothing is predicted on a non-empty one; recall is 1 on an empty target with an empty
    prediction and 0 on an empty target with a non-empty prediction (sklearn's ``zero_division=0`` gives 0 in the
    both-empty case; DiffBoost's code smooths every count by 1e-3 instead).

    Returns:
        ``(precision, recall)``, each float64 of shape (N,).
    """
    import torch

    pred_b, target_b = _as_batch(pred, "pred"), _as_batch(target, "target")
    if pred_b.shape != target_b.shape:
        raise ValueError(f"pred shape {tuple(pred_b.shape)} != target shape {tuple(target_b.shape)}")
    p, t = pred_b.flatten(1), target_b.flatten(1)
    tp = (p & t).sum(1).to(torch.float64)
    size_p, size_t = p.sum(1).to(torch.float64), t.sum(1).to(torch.float64)
    one, zero = torch.ones_like(tp), torch.zeros_like(tp)
    both_empty = (size_p == 0) & (size_t == 0)
    precision = torch.where(size_p > 0, tp / size_p.clamp(min=1), torch.where(both_empty, one, zero))
    recall = torch.where(size_t > 0, tp / size_t.clamp(min=1), torch.where(both_empty, one, zero))
    return precision, recall


def subset_below(scores: Tensor | np.ndarray | Sequence[float], x: float) -> np.ndarray:
    """Indices of the images whose baseline score is strictly below ``x``.

    The thesis' poorly segmented subset S_x (chapter 5: S_0.8, S_0.6, HAM10000 S_0.4)
    is the set of test images on which the baseline segmenter (trained without
    synthetic data) reaches IoU < x.

    Args:
        scores: per-image baseline IoU, shape (N,).
        x: threshold; the comparison is strict (IoU == x is not in S_x).

    Returns:
        int64 array of the selected indices in increasing order (usable to index a
        tensor, an array or a list comprehension).
    """
    values = np.asarray(scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per image), got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; every image needs a baseline IoU")
    return np.flatnonzero(values < x).astype(np.int64)


class DiceIoU(BenchMetric):
    """Accumulating per-image Dice and IoU (torchmetrics-style update/compute).

    ``update(pred, target)`` takes bool masks (N, H, W) or (H, W); ``compute()``
    returns ``{"dice": mean, "iou": mean}`` over all images seen;
    ``per_image()`` returns the per-image float64 arrays for paired tests.
    """

    higher_is_better: ClassVar[bool | None] = True
    display_name: ClassVar[str] = "Dice / IoU"
    lower_bound: ClassVar[float | None] = 0.0
    upper_bound: ClassVar[float | None] = 1.0

    def reset(self) -> None:
        """Forget all images."""
        self._dice: list[np.ndarray] = []
        self._iou: list[np.ndarray] = []

    def update(self, pred: Tensor, target: Tensor) -> None:  # type: ignore[override]
        """Score a batch of masks and keep the per-image values."""
        dice, iou = dice_iou(pred, target)
        self._dice.append(dice.cpu().numpy())
        self._iou.append(iou.cpu().numpy())

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image scores in the order seen: ``{"dice": (N,), "iou": (N,)}``."""
        if not self._dice:
            return {"dice": np.zeros(0), "iou": np.zeros(0)}
        return {"dice": np.concatenate(self._dice), "iou": np.concatenate(self._iou)}

    def compute(self) -> dict[str, float]:
        """Mean Dice and IoU over all images; raises if nothing was seen."""
        scores = self.per_image()
        if scores["dice"].size == 0:
            raise RuntimeError("DiceIoU.compute() called before any update()")
        return {"dice": float(scores["dice"].mean()), "iou": float(scores["iou"].mean())}

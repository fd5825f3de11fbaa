"""Surface distances between binary masks: HD95 and ASSD (DiffBoost Table II, spec Part C.1), in mm with spacing.

Both follow medpy's definitions (DiffBoost's ``evaluation/metrics.py`` calls ``medpy.metric.binary.hd95`` / ``assd``,
connectivity 1): the surface of a mask is the mask minus its binary erosion; d_AB are the Euclidean distances (with
the pixel spacing) from A's surface pixels to B's surface;

    HD95 = 95th percentile of concat(d_AB, d_BA),          ASSD = mean(concat(d_AB, d_BA))

(medpy >= 0.5; medpy 0.4, which DiffBoost's 2023 environment may have had, averaged the two directed means instead).

The surfaces and distance maps come from MONAI (``monai.metrics.utils.get_mask_edges`` and
``get_surface_distance``, Euclidean, with spacing); only the final reduction is written here, because MONAI's own
HD95 reduction differs: ``compute_hausdorff_distance(percentile=95)`` is max(P95(d_AB), P95(d_BA)) (its
``compute_average_surface_distance(symmetric=True)`` equals medpy's ASSD). ``convention="monai"`` gives MONAI's HD95.
tests/metrics/test_surface.py checks both conventions against medpy and MONAI on shared inputs.

Empty masks (medpy raises): both empty -> NaN (excluded from means, spec C.1 [O]); exactly one empty -> the image
diagonal in spacing units (``empty="diagonal"``), or NaN (``empty="nan"``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Convention = Literal["medpy", "monai"]


def _distances(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    edges_pred, edges_target = get_mask_edges(pred, target, crop=True)
    d_pt = get_surface_distance(edges_pred, edges_target, distance_metric="euclidean", spacing=spacing)
    d_tp = get_surface_distance(edges_target, edges_pred, distance_metric="euclidean", spacing=spacing)
    return np.asarray(d_pt, dtype=np.float64), np.asarray(d_tp, dtype=np.float64)


def _check(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred)
    t = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D (one image or one case), got shape {p.shape}")
    for name, m in (("pred", p), ("target", t)):
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name} holds values outside {{0, 1}}; pass a binary mask")
    return p.astype(bool), t.astype(bool)


def hd95_assd(pred: Any, target: Any, spacing: Sequence[float] | None = None, convention: Convention = "medpy",
              empty: Literal["diagonal", "nan"] = "diagonal") -> tuple[float, float]:
    """HD95 and ASSD of one binary mask pair (2D image or 3D case).

    Args:
        pred, target: bool (or 0/1) arrays/tensors of one shape, (H, W) or (D, H, W).
        spacing: physical size of a pixel per axis (mm); None: pixels.
        convention: ``medpy`` (DiffBoost's code) or ``monai`` (MONAI's reductions; see the module doc).
        empty: value when exactly one mask is empty (both empty: NaN).

    Returns:
        ``(hd95, assd)`` in spacing units.
    """
    p, t = _check(pred, target)
    spacing = tuple(float(s) for s in (spacing or (1.0,) * p.ndim))
    if len(spacing) != p.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {p.ndim}D mask")
    if not p.any() and not t.any():
        return math.nan, math.nan
    if not p.any() or not t.any():
        if empty == "nan":
            return math.nan, math.nan
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, spacing))))
        return diagonal, diagonal
    d_pt, d_tp = _distances(p, t, spacing)
    if convention == "medpy":
        return float(np.percentile(np.concatenate([d_pt, d_tp]), 95)), float(np.concatenate([d_pt, d_tp]).mean())
    if convention == "monai":
        return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))), float(np.concatenate([d_pt, d_tp]).mean())
    raise ValueError(f"unknown convention '{convention}'; valid: medpy, monai")


def batch_hd95_assd(pred: Any, target: Any, spacing: Sequence[float] | None = None,
                    convention: Convention = "medpy", empty: Literal["diagonal", "nan"] = "diagonal"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image `hd95_assd` of (N, H, W) masks; returns two float64 arrays of shape (N,)."""
    p, t = _check(pred, target) if np.ndim(pred) == 3 else (None, None)
    if p is None:
        raise ValueError(f"batch masks must be (N, H, W), got shape {np.shape(pred)}")
    rows = [hd95_assd(p[i], t[i], spacing, convention, empty) for i in range(len(p))]
    return np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows], dtype=np.float64)

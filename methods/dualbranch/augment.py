"""Random geometric layout augmentation of a lesion mask (thesis section 5.4.1: "random expansion, compression,
flipping, and rotation"; spec ch5 section 4.1 gives the [A] ranges).

Order: expansion/compression, then flips, then rotation about the lesion centroid, then a shift that brings the
lesion back inside the frame. Every step is an option of `LayoutAugmentConfig`; the random draws come from one
``numpy.random.Generator`` (seeded per condition by the caller), and the drawn values are returned for the record.

* ``resize="morphology"`` (default, spec's alternative): dilation (expansion) or erosion (compression) by a
  Euclidean distance ``d = f * r_eq``, ``f ~ U(morph_fraction)`` and ``r_eq = sqrt(area / pi)`` the equivalent radius:
  a pixel joins on dilation when its distance to the mask is ``<= d`` and stays on erosion when its distance to the
  background is ``> d`` (exact Euclidean distance transform, so ``d`` below one pixel changes nothing: at 64 px,
  where lesions have ``r_eq`` of about 10 px, most draws are no-ops; ``resize_pixels`` records the pixels changed).
* ``resize="scaling"`` (spec's first suggestion): independent scale factors per axis ``~ U(scale_range)`` about the
  centroid, nearest-neighbour.
* flips: horizontal / vertical with ``p_flip`` each, of the whole frame.
* rotation: angle ``~ U(rotation_range)`` degrees (counter-clockwise as displayed, rows pointing down) about the
  centroid, nearest-neighbour, with ``p_rotate``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayoutAugmentConfig:
    """Layout augmentation options (spec ch5 section 4.1 [A] values as defaults)."""

    resize: Literal["morphology", "scaling", "none"] = "morphology"
    """Expansion/compression: morphological dilation/erosion, per-axis scaling about the centroid, or none."""
    p_expand: float = 0.5
    """Probability of expansion (else compression)."""
    morph_fraction: tuple[float, float] = (0.02, 0.10)
    """Range of the dilation/erosion distance as a fraction of the equivalent radius (spec: 2-10 %)."""
    scale_range: tuple[float, float] = (0.8, 1.2)
    """Per-axis scale range of ``resize="scaling"`` (spec: 0.8-1.2)."""
    p_flip: float = 0.5
    """Probability of each of the horizontal and vertical flips (spec: 0.5 per axis)."""
    p_rotate: float = 1.0
    """Probability of a rotation."""
    rotation_range: tuple[float, float] = (0.0, 360.0)
    """Rotation angle range in degrees (spec: uniform in [0, 360))."""


def dilate(mask: np.ndarray, distance: float) -> np.ndarray:
    """Pixels within Euclidean ``distance`` of the mask (the mask dilated by a disk of that radius)."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return mask.copy()
    return distance_transform_edt(~mask) <= distance


def erode(mask: np.ndarray, distance: float) -> np.ndarray:
    """Mask pixels farther than ``distance`` from the background (pixels outside the frame count as background)."""
    from scipy.ndimage import distance_transform_edt

    padded = np.pad(mask, 1, constant_values=False)
    return (distance_transform_edt(padded) > distance)[1:-1, 1:-1]


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass of a non-empty mask."""
    rows, cols = np.nonzero(mask)
    return float(rows.mean()), float(cols.mean())


def affine_about(mask: np.ndarray, matrix: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Nearest-neighbour image of ``mask`` under ``p -> center + matrix (p - center)`` on a canvas 3x the size
    (nothing is cut off yet); the frame sits at offset (H, W) of the returned (3H, 3W) array."""
    from scipy.ndimage import affine_transform

    h, w = mask.shape
    canvas = np.zeros((3 * h, 3 * w), dtype=np.uint8)
    canvas[h:2 * h, w:2 * w] = mask
    c = np.array([center[0] + h, center[1] + w])
    inverse = np.linalg.inv(matrix)
    offset = c - inverse @ c  # input = inverse @ output + offset
    return affine_transform(canvas, inverse, offset=offset, order=0, mode="constant", cval=0).astype(bool)


def rotation_matrix(degrees: float) -> np.ndarray:
    """(row, col) matrix of a counter-clockwise rotation as displayed (rows point down)."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def back_in_frame(canvas: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Crop the (3H, 3W) canvas to the frame, shifting the lesion's bounding box the least that brings it inside
    (centred when it is larger than the frame). Returns the mask and the (row, col) shift."""
    h, w = shape
    if not canvas.any():
        return canvas[h:2 * h, w:2 * w].copy(), (0, 0)
    rows, cols = np.nonzero(canvas)
    shift = []
    for lo, hi, start, size in ((rows.min(), rows.max(), h, h), (cols.min(), cols.max(), w, w)):
        extent = hi - lo + 1
        if extent > size:
            s = start + (size - extent) // 2 - lo
        else:
            s = max(start - lo, 0) + min(start + size - 1 - hi, 0)
        shift.append(int(s))
    moved = np.roll(canvas, shift, axis=(0, 1))
    return moved[h:2 * h, w:2 * w].copy(), (shift[0], shift[1])


def augment_layout(mask: np.ndarray, rng: np.random.Generator,
                   config: LayoutAugmentConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Randomly expand/compress, flip and rotate a lesion mask, keeping the lesion inside the frame.

    Args:
        mask: (H, W) bool mask.
        rng: the source of every random draw (seed it per condition).
        config: options; defaults are the spec's.

    Returns:
        The augmented (H, W) bool mask and the drawn parameters (JSON-serialisable).
    """
    c = config or LayoutAugmentConfig()
    out = np.asarray(mask, dtype=bool).copy()
    params: dict[str, Any] = {}
    if not out.any():
        return out, {"empty": True}
    expand = bool(rng.random() < c.p_expand)
    if c.resize == "morphology":
        fraction = float(rng.uniform(*c.morph_fraction))
        distance = fraction * float(np.sqrt(out.sum() / np.pi))
        changed = dilate(out, distance) if expand else erode(out, distance)
        moved = int((changed != out).sum()) if changed.any() else 0  # an erosion that empties the mask is skipped
        if moved:
            out = changed
        params.update(resize="dilate" if expand else "erode", morph_distance=distance, resize_pixels=moved)
    elif c.resize == "scaling":
        sy, sx = (float(s) for s in rng.uniform(*c.scale_range, size=2))
        out, _ = back_in_frame(affine_about(out, np.diag([sy, sx]), centroid(out)), out.shape)
        params.update(resize="scale", scale=[sy, sx])
    elif c.resize != "none":
        raise ValueError(f"resize must be 'morphology', 'scaling' or 'none', got '{c.resize}'")
    flip_h, flip_v = bool(rng.random() < c.p_flip), bool(rng.random() < c.p_flip)
    if flip_h:
        out = out[:, ::-1]
    if flip_v:
        out = out[::-1, :]
    params.update(flip_h=flip_h, flip_v=flip_v)
    angle = float(rng.uniform(*c.rotation_range)) if rng.random() < c.p_rotate else 0.0
    shift = (0, 0)
    if angle:
        out, shift = back_in_frame(affine_about(out, rotation_matrix(angle), centroid(out)), out.shape)
    params.update(angle=angle, shift=list(shift))
    return np.ascontiguousarray(out), params

"""Lesion contrast and skin tone by the Individual Typology Angle (thesis chapter 5, section 5.1).

``ITA = arctan((L* - 50) / b*) * 180 / pi`` in degrees (Eq. 5.1), with CIELAB from
``skimage.color.rgb2lab`` (sRGB, D65) on images in [0, 1]. ITA lesion is computed
over the mask pixels, ITA skin over *all* non-mask pixels (no ring, no erosion),
and ``ITA difference = ITA skin - ITA lesion``; an image is low-contrast when the
difference is < 30 degrees (strict; research ch5 section 1.2).

Region aggregation is not stated in the thesis; ``aggregation="region_mean"``
(default, the research recommendation: ITA of the region's mean L* and b*) or
``"pixel_mean"`` (mean of per-pixel ITA, unstable where b* ~ 0).
The angle is ``angle="arctan"`` (default: ``np.arctan`` of the ratio, as the thesis
writes it; range (-90, 90)) or ``"atan2"`` (``atan2(L* - 50, b*)``, derm_ita's and
Groh et al.'s code; range (-180, 180]). The two agree whenever b* > 0; for b* < 0
arctan folds the angle back by 180 degrees.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

LOW_CONTRAST_THRESHOLD = 30.0
"""ITA difference (degrees) below which an image is low-contrast (ch5 section 1.2)."""

# Kinyanjui-style thresholds (ch5 section 1.3): FST I if ITA > 55, II if > 41, III > 28, IV > 19, V > 10, else VI.
FITZPATRICK_THRESHOLDS: tuple[float, ...] = (55.0, 41.0, 28.0, 19.0, 10.0)

ANGLES = ("arctan", "atan2")
"""ITA angle conventions: the thesis's arctan of the ratio, or atan2 (derm_ita)."""


def _as_hwc(image: Any) -> np.ndarray:
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    arr = arr.astype(np.float64)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be RGB (3, H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError("image values must be in [0, 1] (convert uint8 with /255 first)")
    return arr


def ita_from_lab(L: Any, b: Any, angle: str = "arctan") -> np.ndarray:
    """Per-value ITA in degrees from L* and b* (arrays broadcast).

    ``angle="arctan"``: ``arctan((L* - 50) / b*)``, b* = 0 gives +-90 (NaN if also L* = 50);
    ``"atan2"``: ``atan2(L* - 50, b*)``, equal to arctan for b* > 0; for b* < 0 it lies in (90, 180] when
    L* >= 50 and in (-180, -90) when L* < 50 (arctan's value +-180).
    """
    L, b = np.asarray(L, np.float64), np.asarray(b, np.float64)
    if angle == "arctan":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.degrees(np.arctan((L - 50.0) / b))
    if angle == "atan2":
        return np.degrees(np.arctan2(L - 50.0, b))
    raise ValueError(f"angle must be 'arctan' or 'atan2', got {angle!r}")


def ita_region(image: Any, region: Any, aggregation: str = "region_mean", angle: str = "arctan") -> float:
    """ITA (degrees) of the pixels where ``region`` is True.

    Args:
        image: RGB image in [0, 1], (3, H, W) or (H, W, 3), tensor or array.
        region: bool mask (H, W).
        aggregation: ``"region_mean"`` (ITA of mean L*, mean b*) or ``"pixel_mean"``
            (mean of per-pixel ITA).
        angle: ``"arctan"`` (thesis) or ``"atan2"`` (see `ita_from_lab`).

    Raises:
        ValueError: if the region is empty.
    """
    from skimage.color import rgb2lab

    img = _as_hwc(image)
    mask = np.asarray(region.detach().cpu().numpy() if hasattr(region, "detach") else region).astype(bool)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} != image size {img.shape[:2]}")
    if not mask.any():
        raise ValueError("ITA of an empty region is undefined")
    if angle not in ANGLES:
        raise ValueError(f"angle must be 'arctan' or 'atan2', got {angle!r}")
    lab = rgb2lab(img)[mask]
    if aggregation == "region_mean":
        return float(ita_from_lab(lab[:, 0].mean(), lab[:, 2].mean(), angle))
    if aggregation == "pixel_mean":
        return float(np.nanmean(ita_from_lab(lab[:, 0], lab[:, 2], angle)))
    raise ValueError(f"aggregation must be 'region_mean' or 'pixel_mean', got {aggregation!r}")


def ita_contrast(image: Any, mask: Any, aggregation: str = "region_mean", angle: str = "arctan") -> dict[str, float]:
    """ITA over lesion and skin pixels and their difference.

    Args:
        image: RGB in [0, 1] (3, H, W) or (H, W, 3).
        mask: lesion mask (H, W), bool (ISIC PNG masks: pass ``mask > 127``).
        aggregation, angle: see `ita_region`.

    Returns:
        ``{"ita_lesion", "ita_skin", "ita_difference"}`` in degrees;
        difference = skin - lesion (large = high contrast).
    """
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask).astype(bool)
    lesion = ita_region(image, m, aggregation, angle)
    skin = ita_region(image, ~m, aggregation, angle)
    return {"ita_lesion": lesion, "ita_skin": skin, "ita_difference": skin - lesion}


def is_low_contrast(ita_difference: float, threshold: float = LOW_CONTRAST_THRESHOLD) -> bool:
    """True when the ITA difference is strictly below ``threshold`` (30 degrees)."""
    return bool(ita_difference < threshold)


def ita_to_fitzpatrick(ita: float) -> int:
    """Fitzpatrick skin type 1..6 from ITA: I > 55 >= II > 41 >= III > 28 >= IV > 19 >= V > 10 >= VI."""
    if np.isnan(ita):
        raise ValueError("ITA is NaN")
    for fst, threshold in enumerate(FITZPATRICK_THRESHOLDS, start=1):
        if ita > threshold:
            return fst
    return 6


def fitzpatrick_group(fst: int) -> str:
    """The 3-class grouping of chapter 5's bias analysis: ``"I-II"``, ``"III-IV"``, ``"V-VI"``."""
    if fst not in range(1, 7):
        raise ValueError(f"Fitzpatrick type must be 1..6, got {fst}")
    return ("I-II", "III-IV", "V-VI")[(fst - 1) // 2]

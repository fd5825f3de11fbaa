"""Per-image attributes of the chapter 5 bias analysis (thesis section 5.2, research ch5 sections 1.1-1.3).

For an image and its ground-truth lesion mask:

- ``ita_skin``, ``ita_lesion``, ``ita_difference``: `bench.metrics.contrast.ita_contrast`
  (ITA of the region-mean L*, b*; skin = every non-lesion pixel; difference = skin - lesion; the thesis's
  arctan, or ``angle="atan2"``);
- ``fitzpatrick`` and ``skin_tone``: the Fitzpatrick type of ITA skin by the Kinyanjui thresholds and its
  3-class group (I-II, III-IV, V-VI). The thesis labels skin tone with a CNN ensemble trained on
  Fitzpatrick17k; without those weights the ITA mapping is the default (``skin_tone_source="ita"``);
- ``area_ratio``: lesion pixels / image pixels;
- ``circularity``: ``4 pi S / P^2`` (Eq. 5.2), S the lesion pixel count and P the boundary length from
  ``skimage.measure.perimeter`` (4-connected estimator with diagonal corrections). Pixel perimeter
  estimators can exceed 1 on small blobs; values are not clipped (clip only for plotting).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.metrics.contrast import fitzpatrick_group, ita_contrast, ita_to_fitzpatrick

logger = logging.getLogger(__name__)

#: Continuous attributes compared by KS / Mann-Whitney, in plotting order.
CONTINUOUS = ("ita_skin", "ita_lesion", "ita_difference", "area_ratio", "circularity")
#: Categorical attributes compared by chi-square.
CATEGORICAL = ("skin_tone",)
SKIN_TONE_GROUPS = ("I-II", "III-IV", "V-VI")


def _numpy_mask(mask: Any) -> np.ndarray:
    return np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask).astype(bool)


def circularity(mask: Any) -> float:
    """Circularity ``4 pi S / P^2`` of a binary mask (H, W); NaN when the mask is empty.

    S is the number of foreground pixels, P ``skimage.measure.perimeter(mask, neighborhood=4)``
    summed over all objects. A rasterised disc gives about 1; irregular shapes give less.
    """
    from skimage.measure import perimeter

    m = _numpy_mask(mask)
    area = float(m.sum())
    if area == 0:
        return float("nan")
    p = float(perimeter(m, neighborhood=4))
    return float(4.0 * math.pi * area / p ** 2) if p > 0 else float("nan")


def image_attributes(image: Any, mask: Any, aggregation: str = "region_mean", angle: str = "arctan") -> dict[str, Any]:
    """The bias-analysis attributes of one image.

    Args:
        image: RGB (3, H, W) or (H, W, 3) in [0, 1].
        mask: lesion mask (H, W) bool; it must hold at least one lesion and one skin pixel.
        aggregation: ITA region aggregation (see `bench.metrics.contrast.ita_region`).
        angle: ITA angle, ``arctan`` (thesis) or ``atan2`` (see `bench.metrics.contrast.ita_from_lab`).

    Returns:
        ``ita_skin``, ``ita_lesion``, ``ita_difference`` (degrees), ``fitzpatrick`` (1..6 from ITA skin),
        ``skin_tone`` ("I-II" | "III-IV" | "V-VI"), ``area_ratio`` in [0, 1], ``circularity``.
    """
    m = _numpy_mask(mask)
    ita = ita_contrast(image, m, aggregation, angle)
    fst = ita_to_fitzpatrick(ita["ita_skin"])
    return {**ita, "fitzpatrick": fst, "skin_tone": fitzpatrick_group(fst), "area_ratio": float(m.mean()),
            "circularity": circularity(m)}


def dataset_attributes(samples: Sequence[Any], aggregation: str = "region_mean", angle: str = "arctan") -> Any:
    """A pandas DataFrame of `image_attributes` for every sample (column ``id`` from ``meta["id"]``).

    Samples whose mask is empty or full (ITA of one region undefined) get NaN ITA values and a
    ``skin_tone`` of None (NaN in the DataFrame), with one warning naming how many.
    """
    import pandas as pd

    rows, undefined = [], 0
    for i, s in enumerate(samples):
        sid = str(s.meta.get("id", i))
        try:
            row = image_attributes(s.image, s.mask, aggregation, angle)
        except ValueError:
            undefined += 1
            m = _numpy_mask(s.mask)
            row = {"ita_skin": np.nan, "ita_lesion": np.nan, "ita_difference": np.nan, "fitzpatrick": None,
                   "skin_tone": None, "area_ratio": float(m.mean()), "circularity": circularity(m)}
        rows.append({"id": sid, **row})
    if undefined:
        logger.warning("%d of %d images have an empty lesion or skin region: ITA left undefined", undefined, len(rows))
    return pd.DataFrame(rows)

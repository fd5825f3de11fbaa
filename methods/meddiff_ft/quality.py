"""MedDiff-FT's automated quality assessment and mask "corrosion" (spec A.6).

Paper: DINOv2 features, cosine similarity between a generated image and the original, images with "excessively
high or low" similarity excluded; then the mask edges eroded. Thresholds, model size, the reference image and the
kernel are unpublished. Choices (options of `MedDiffFTConfig`, spec A.6 [O]):

* features: ``qa_extractor`` (paper profile ``dinov2-base``, 768-d CLS, from the weights folder; mini profile
  ``mini-clip``, the package's image tower, a stand-in named in every record's config);
* the reference is the image's own source background;
* the band is absolute (``qa_low``, ``qa_high``) or, when those are unset, the [``qa_low_q``, ``qa_high_q``]
  quantiles (0.10, 0.90) of the first generated batch (the calibration batch), fixed for the rest of the run;
* a rejected pair is redrawn (new noise, same background and mask) up to ``qa_retries`` times, so the method
  still returns one pair per condition (the paper over-generates and truncates; same effect);
* erosion: an elliptical (disk) element of side ``k = max(3, odd(round(0.01 min(H, W))))``, ``erode_iterations``
  times; a mask eroded to nothing keeps its uneroded form.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def cosine_similarity(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of (N, d) features."""
    return F.cosine_similarity(features_a.float(), features_b.float(), dim=1)


def quantile_band(similarities: torch.Tensor, low_q: float, high_q: float) -> tuple[float, float]:
    """The [low_q, high_q] quantiles of a calibration batch's similarities."""
    if not 0 <= low_q < high_q <= 1:
        raise ValueError(f"quality band quantiles must satisfy 0 <= low < high <= 1, got {low_q}, {high_q}")
    s = similarities.double()
    return float(torch.quantile(s, low_q)), float(torch.quantile(s, high_q))


def in_band(similarities: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """Bool (N,): similarity within [low, high] (inclusive)."""
    low, high = band
    return (similarities >= low) & (similarities <= high)


def band_distance(similarities: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """How far outside the band each similarity lies (0 inside)."""
    low, high = band
    return (low - similarities).clamp_min(0) + (similarities - high).clamp_min(0)


def erosion_kernel_size(height: int, width: int) -> int:
    """Spec A.6 [O]: the odd integer nearest 1 % of the shorter side, at least 3 (5 at 512 px)."""
    k = max(3, int(round(0.01 * min(height, width))))
    return k if k % 2 else k + 1


def erode_mask(mask: torch.Tensor, kernel: int | None = None, iterations: int = 1) -> torch.Tensor:
    """Erode a (H, W) bool mask with a disk of diameter ``kernel`` (default `erosion_kernel_size`); a mask eroded
    to nothing is returned unchanged."""
    from scipy.ndimage import binary_erosion
    from skimage.morphology import disk

    k = kernel or erosion_kernel_size(*mask.shape[-2:])
    footprint = disk(max(1, math.floor(k / 2)))
    m = mask.cpu().numpy().astype(bool)
    out = m
    for _ in range(iterations):
        out = binary_erosion(out, structure=footprint)
    if not out.any():
        return mask.bool()
    return torch.from_numpy(np.ascontiguousarray(out))

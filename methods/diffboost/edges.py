"""DiffBoost's edge condition (spec B.5): ``edge = clip(E(image) + B(mask), 0, 1)``.

* E (``edge_detector``, recorded in the config): `bench.diffusion.edges.image_edges` (shared with the
  radimagenet-synthesis task): ``hed`` (the code's: sniklaus' HED with the BSDS500 weights from a local file,
  `bench.diffusion.hed`), or a classical detector where those weights are absent (mini): ``canny``
  (``skimage.feature.canny``, sigma ``edge_sigma``, on the grey image; spec B.14's first choice) or ``sobel``
  (``skimage.filters.sobel`` magnitude scaled to [0, 1] per image).
* B: the code's mask-boundary term verbatim: ``clip(|conv2d(mask, K, mode='same', boundary='symm')|, 0, 1)`` with
  the complex Scharr kernel ``K = [[-3-3j, -10j, 3-3j], [-10, 0, 10], [-3+3j, 10j, 3+3j]]``
  (``scipy.signal.convolve2d``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.diffusion.edges import EDGE_DETECTORS, image_edges

__all__ = ["EDGE_DETECTORS", "SCHARR", "edge_condition", "image_edges", "mask_boundary"]

#: The code's complex Scharr kernel (segmentation/preprocess/utils.py).
SCHARR = np.array([[-3 - 3j, 0 - 10j, +3 - 3j], [-10 + 0j, 0 + 0j, +10 + 0j], [-3 + 3j, 0 + 10j, +3 + 3j]])


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """B(mask) in {0, 1}-clipped float (H, W), as the code computes it."""
    from scipy.signal import convolve2d

    return np.clip(np.abs(convolve2d(mask.astype(np.float64), SCHARR, mode="same", boundary="symm")), 0, 1)


def edge_condition(image: torch.Tensor, mask: torch.Tensor | None, detector: str = "canny", sigma: float = 2.0,
                   channels: int = 3, hed: Any = None) -> torch.Tensor:
    """The conditioning image (channels, H, W) float in [0, 1]: image edges plus the mask boundary, clipped."""
    edges = image_edges(image.detach().cpu().double().numpy(), detector, sigma, hed)
    if mask is not None:
        edges = np.clip(edges + mask_boundary(mask.detach().cpu().numpy()), 0, 1)
    return torch.from_numpy(edges).float()[None].expand(channels, -1, -1).contiguous()

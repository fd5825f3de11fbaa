"""DiffBoost's edge condition (spec B.5): ``edge = clip(E(image) + B(mask), 0, 1)``.

* E (``edge_detector``, recorded in the config): ``hed`` (the code's: sniklaus' HED with the BSDS500 weights from a
  local file, `methods.diffboost.hed`), or a classical detector where those weights are absent (mini): ``canny``
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

#: The code's complex Scharr kernel (segmentation/preprocess/utils.py).
SCHARR = np.array([[-3 - 3j, 0 - 10j, +3 - 3j], [-10 + 0j, 0 + 0j, +10 + 0j], [-3 + 3j, 0 + 10j, +3 + 3j]])

EDGE_DETECTORS = ("hed", "canny", "sobel")


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """B(mask) in {0, 1}-clipped float (H, W), as the code computes it."""
    from scipy.signal import convolve2d

    return np.clip(np.abs(convolve2d(mask.astype(np.float64), SCHARR, mode="same", boundary="symm")), 0, 1)


def image_edges(image: np.ndarray, detector: str = "canny", sigma: float = 2.0, hed: Any = None) -> np.ndarray:
    """E(image) in [0, 1], (H, W), of a (C, H, W) image in [0, 1] (classical detectors: channels averaged first;
    ``hed``: the loaded `HED` network on the RGB image, quantised to 8 bits as the code's annotator returns it)."""
    if detector == "hed":
        if hed is None:
            raise ValueError("edge_detector=hed needs the HED network (method.hed_weights)")
        rgb = torch.from_numpy(np.repeat(image, 3, 0) if image.shape[0] == 1 else image).float()[None]
        with torch.no_grad():
            edge = hed(rgb)[0, 0].numpy()
        return np.round(np.clip(edge * 255.0, 0, 255)) / 255.0
    grey = image.mean(0) if image.ndim == 3 else image
    if detector == "canny":
        from skimage.feature import canny

        return canny(grey, sigma=sigma).astype(np.float64)
    if detector == "sobel":
        from skimage.filters import sobel

        mag = sobel(grey)
        return mag / mag.max() if mag.max() > 0 else mag
    raise ValueError(f"unknown edge detector '{detector}'; valid: {', '.join(EDGE_DETECTORS)}")


def edge_condition(image: torch.Tensor, mask: torch.Tensor | None, detector: str = "canny", sigma: float = 2.0,
                   channels: int = 3, hed: Any = None) -> torch.Tensor:
    """The conditioning image (channels, H, W) float in [0, 1]: image edges plus the mask boundary, clipped."""
    edges = image_edges(image.detach().cpu().double().numpy(), detector, sigma, hed)
    if mask is not None:
        edges = np.clip(edges + mask_boundary(mask.detach().cpu().numpy()), 0, 1)
    return torch.from_numpy(edges).float()[None].expand(channels, -1, -1).contiguous()

"""Image edge maps as DiffBoost conditions on them (spec B.4, B.5, B.14), shared by ``methods/diffboost`` and the
``radimagenet-synthesis`` task (Table I: an image reconstructed from its edge map), so both compute one edge map.

``image_edges(image, detector, sigma, hed)``: E(image) in [0, 1], (H, W), of a (C, H, W) image in [0, 1]:

* ``hed``: the code's (sniklaus' HED with the BSDS500 weights from a local file, `bench.diffusion.hed`) on the RGB
  image, quantised to 8 bits as the code's annotator returns it;
* ``canny``: ``skimage.feature.canny`` with Gaussian sigma ``sigma`` on the channel mean (spec B.14's first choice
  where the HED weights are absent);
* ``sobel``: ``skimage.filters.sobel`` magnitude of the channel mean, scaled to [0, 1] per image.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

EDGE_DETECTORS = ("hed", "canny", "sobel")


def image_edges(image: np.ndarray, detector: str = "canny", sigma: float = 2.0, hed: Any = None) -> np.ndarray:
    """E(image) in [0, 1], (H, W) float64, of a (C, H, W) float image in [0, 1] (see the module docstring)."""
    if detector == "hed":
        if hed is None:
            raise ValueError("edge_detector=hed needs the HED network (its weights file)")
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


def edge_map(image: torch.Tensor, detector: str = "canny", sigma: float = 2.0, hed: Any = None,
             channels: int = 3) -> torch.Tensor:
    """The edge map of one (C, H, W) image in [0, 1] as a (channels, H, W) float tensor in [0, 1]."""
    edges = image_edges(image.detach().cpu().double().numpy(), detector, sigma, hed)
    return torch.from_numpy(edges).float()[None].expand(channels, -1, -1).contiguous()

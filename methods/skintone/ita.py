"""The ITA baselines of Table 5.1: ``ita-ycbcr`` (Groh et al. 2021) and ``ita-8patch`` (Bevan & Atapour-Abarghouei 2022).

Both estimate the skin's Individual Typology Angle from the image alone, map it to a Fitzpatrick type and that
to the three groups (research ch5 section 1.3); ``fit`` does nothing.

* ``ita-ycbcr``: skin pixels by Groh et al.'s rule (their ``ita_fitzpatrick_analysis.ipynb``; Kolkur et al.'s
  RGB + YCbCr thresholds), then the ITA of the mean L*, b* of those pixels after keeping, for L* and for b*
  separately, the values within one standard deviation of the mean.
* ``ita-8patch``: hair removal, then the ITA of the mean L*, b* of eight 20x20 patches at fixed positions along
  the border of the 256x256 image; the maximum (lightest) is kept (Bevan's ``preprocessing.py``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from bench.interface import RunContext
from methods.skintone.common import GROH_THRESHOLDS, Annotator

logger = logging.getLogger(__name__)

#: Bevan's eight patches on the 256x256 image, (rows, columns): bottom, top, left, right centres and four corners.
PATCHES: tuple[tuple[slice, slice], ...] = (
    (slice(230, 250), slice(115, 135)), (slice(5, 25), slice(115, 135)),
    (slice(115, 135), slice(5, 25)), (slice(115, 135), slice(230, 250)),
    (slice(216, 236), slice(216, 236)), (slice(216, 236), slice(20, 40)),
    (slice(20, 40), slice(20, 40)), (slice(20, 40), slice(216, 236)),
)
PATCH_IMAGE_SIZE = 256
"""Side of the image the patches are placed on (Bevan)."""


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) float64 array."""
    return image.detach().cpu().permute(1, 2, 0).double().clamp(0, 1).numpy()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def ycbcr_skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Groh et al.'s skin rule on an (H, W, 3) uint8 RGB image -> bool (H, W).

    RGB: R >= 95, G >= 40, B >= 20, R >= B, R - G >= 15; YCbCr (``skimage.color.rgb2ycbcr``, Y in [16, 235]):
    Y >= 80, Cb >= 85, Cr >= 135 and Cr inside five lines in the Cb-Cr plane
    (Cr < 1.5862 Cb + 20, Cr > 0.3448 Cb + 76.2069, Cr > -4.5652 Cb + 234.5652, Cr < -1.15 Cb + 301.75,
    Cr < -2.2857 Cb + 432.85).
    """
    from skimage.color import rgb2ycbcr

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"ycbcr_skin_mask takes an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    R, G, B = (rgb[..., k].astype(np.int32) for k in range(3))
    rgb_rule = (R >= 95) & (G >= 40) & (B >= 20) & (R >= B) & (R - G >= 15)
    ycc = rgb2ycbcr(rgb)
    Y, Cb, Cr = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    ycc_rule = ((Y >= 80) & (Cb >= 85) & (Cr >= 135)
                & (Cr < 1.5862 * Cb + 20) & (Cr > 0.3448 * Cb + 76.2069) & (Cr > -4.5652 * Cb + 234.5652)
                & (Cr < -1.15 * Cb + 301.75) & (Cr < -2.2857 * Cb + 432.85))
    return rgb_rule & ycc_rule


def trimmed_mean(values: np.ndarray, n_std: float | None) -> float:
    """Mean of the values within ``n_std`` standard deviations of their mean (all values if None)."""
    values = np.asarray(values, dtype=np.float64)
    if n_std is None or values.size < 2:
        return float(values.mean())
    mean, std = values.mean(), values.std()
    kept = values[np.abs(values - mean) <= n_std * std]
    return float(kept.mean()) if kept.size else float(mean)


def ita_to_fst(ita: float, scheme: str = "kinyanjui") -> int:
    """Fitzpatrick type 1..6 from ITA by Kinyanjui's thresholds (thesis) or Groh et al.'s empirical ones."""
    from bench.metrics.contrast import ita_to_fitzpatrick

    if scheme == "kinyanjui":
        return ita_to_fitzpatrick(ita)
    if scheme != "groh":
        raise ValueError(f"fst_thresholds must be 'kinyanjui' or 'groh', got {scheme!r}")
    if np.isnan(ita):
        raise ValueError("ITA is NaN")
    if ita >= GROH_THRESHOLDS[0]:
        return 1
    for fst, threshold in enumerate(GROH_THRESHOLDS[1:], start=2):
        if ita > threshold:
            return fst
    return 6


def fst_to_group(fst: int) -> int:
    """Fitzpatrick type 1..6 -> group index (0 = I-II, 1 = III-IV, 2 = V-VI)."""
    return (int(fst) - 1) // 2


def ita_ycbcr(rgb: np.ndarray, angle: str = "arctan", trim_std: float | None = 1.0,
              no_skin: str = "whole_image") -> dict[str, Any]:
    """ITA of the YCbCr-masked skin of an (H, W, 3) float RGB image in [0, 1].

    Returns ``{"ita", "skin_fraction", "fallback"}``; ``fallback`` is True when no pixel passed the skin rule and
    the whole image was used (``no_skin="whole_image"``; ``"error"`` raises instead).
    """
    from skimage.color import rgb2lab

    from bench.metrics.contrast import ita_from_lab

    mask = ycbcr_skin_mask(to_uint8(rgb))
    fallback = not mask.any()
    if fallback:
        if no_skin == "error":
            raise ValueError("no pixel passes the YCbCr skin rule")
        mask = np.ones(mask.shape, dtype=bool)
    lab = rgb2lab(rgb)[mask]
    ita = float(ita_from_lab(trimmed_mean(lab[:, 0], trim_std), trimmed_mean(lab[:, 2], trim_std), angle))
    return {"ita": ita, "skin_fraction": float(mask.mean()) if not fallback else 0.0, "fallback": fallback}


def to_patch_size(image: torch.Tensor, mode: str = "center_crop") -> torch.Tensor:
    """(3, H, W) -> (3, 256, 256): centre crop to the short side then resize (Bevan), or resize (``squash``)."""
    from bench.tasks.common import resize_image

    if mode == "center_crop":
        h, w = image.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[:, top:top + side, left:left + side]
    elif mode != "squash":
        raise ValueError(f"patch_resize must be 'center_crop' or 'squash', got {mode!r}")
    return resize_image(image.float(), PATCH_IMAGE_SIZE)


def cross_footprint(size: int = 17) -> np.ndarray:
    """OpenCV's ``MORPH_CROSS`` structuring element: the middle row and column of a size x size square."""
    fp = np.zeros((size, size), dtype=bool)
    fp[size // 2, :] = True
    fp[:, size // 2] = True
    return fp


def remove_hair(rgb: np.ndarray, inpaint: str = "biharmonic", kernel: int = 17, threshold: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Bevan's hair removal on an (H, W, 3) float RGB image: black-hat of the grey image with a 17x17 cross,
    pixels above 10 (of 255) inpainted. Returns the image (float, [0, 1]) and the hair mask."""
    from skimage.morphology import black_tophat

    u8 = to_uint8(rgb)
    grey = np.round(u8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)  # OpenCV's RGB2GRAY
    hair = black_tophat(grey, cross_footprint(kernel)) > threshold
    if not hair.any():
        return rgb, hair
    if inpaint == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        return np.clip(inpaint_biharmonic(rgb, hair, channel_axis=-1), 0, 1), hair
    if inpaint == "telea":
        try:
            import cv2
        except ImportError:
            raise ImportError("hair_inpaint=telea needs OpenCV (pip install opencv-python-headless); "
                              "or use hair_inpaint=biharmonic") from None
        return cv2.inpaint(u8, hair.astype(np.uint8) * 255, 1, cv2.INPAINT_TELEA).astype(np.float64) / 255, hair
    raise ValueError(f"hair_inpaint must be 'biharmonic' or 'telea', got {inpaint!r}")


def eight_patch_ita(image: torch.Tensor, angle: str = "arctan", resize: str = "center_crop", hair_removal: bool = True,
                    inpaint: str = "biharmonic") -> dict[str, Any]:
    """Bevan's 8-patch ITA of a (3, H, W) image in [0, 1]: ``{"ita": max over patches, "patch_ita": [8 values]}``."""
    from skimage.color import rgb2lab

    from bench.metrics.contrast import ita_from_lab

    rgb = to_hwc(to_patch_size(image, resize))
    hair_fraction = 0.0
    if hair_removal:
        rgb, hair = remove_hair(rgb, inpaint)
        hair_fraction = float(hair.mean())
    lab = rgb2lab(rgb)
    values = [float(ita_from_lab(lab[r, c, 0].mean(), lab[r, c, 2].mean(), angle)) for r, c in PATCHES]
    return {"ita": float(np.nanmax(values)), "patch_ita": values, "hair_fraction": hair_fraction}


class _ItaAnnotator(Annotator):
    def _estimate(self, image: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def annotate(self, images: torch.Tensor, ctx: RunContext) -> list[dict[str, Any]]:
        out = []
        for image in images:
            est = self._estimate(image)
            fst = ita_to_fst(est["ita"], self.config.fst_thresholds)
            out.append({"label": fst_to_group(fst), "fst": fst, **est})
        return out


class ItaYCbCr(_ItaAnnotator):
    """ITA of the YCbCr-masked skin pixels -> FST -> group (Table 5.1 "ITA w/ YCbCr", Groh et al. 2021)."""

    def _estimate(self, image: torch.Tensor) -> dict[str, Any]:
        c = self.config
        return ita_ycbcr(to_hwc(image), c.ita_angle, c.ycbcr_trim_std, c.ycbcr_no_skin)


class Ita8Patch(_ItaAnnotator):
    """Maximum ITA of eight fixed border patches -> FST -> group (Table 5.1 "8-patch ITA", Bevan et al. 2022)."""

    def _estimate(self, image: torch.Tensor) -> dict[str, Any]:
        c = self.config
        return eight_patch_ita(image, c.ita_angle, c.patch_resize, c.hair_removal, c.hair_inpaint)


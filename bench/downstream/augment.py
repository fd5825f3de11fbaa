"""Classical online augmentations of segmentation training: the arms of DiffBoost's Table II (spec B.9), via MONAI.

DiffBoost's code (``dataset/augmentation/data_augment.py``) applies one batchgenerators transform per arm to each
training sample, on images scaled to [-1, 1], followed by a per-sample min-max normalisation to [-1, 1]. Here each
arm is the MONAI dictionary transform with the code's parameters; images (C, H, W) in [0, 1] are mapped to [-1, 1]
first (so intensity parameters keep their scale) and min-max normalised back to [0, 1] after (``renorm="minmax"``,
the code's; ``"clip"`` clips instead). Geometric transforms move image and mask alike (mask: nearest neighbour);
intensity transforms touch the image only.

============================  ==========================================  ==================================================
name                          batchgenerators (code)                      MONAI here
============================  ==========================================  ==================================================
``random-contrast``           ContrastAugmentation (0.75, 1.25)           RandScaleIntensityFixedMean(factors 0.25,
                                                                          preserve_range)
``random-gamma``              Gamma (0.7, 1.5)                            RandAdjustContrast(gamma (0.7, 1.5)) (gamma drawn
                                                                          uniformly; batchgenerators draws below / above 1
                                                                          with probability 1/2 each)
``random-brightness``         additive N(0, 0.5), p 1                     a per-sample Gaussian offset N(0, 0.5) (MONAI's
                                                                          RandShiftIntensity draws uniform offsets)
``random-noise``              Gaussian noise, "variance" (0, 0.05), p 1   RandGaussianNoise(std 0.05, sample_std): the std is
                                                                          drawn in (0, 0.05), as batchgenerators does with
                                                                          its "variance"
``random-resolution``         Gaussian blur sigma (0.5, 1.5), p 0.5       RandGaussianSmooth(sigma (0.5, 1.5), prob 0.5)
``random-mirror``             mirror axes (0, 1), p_per_sample 0.75       RandFlip per axis (prob 0.5), the pair applied with
                                                                          probability 0.75
``random-rotate``             rotation +-5 degrees                        RandRotate(+-5 degrees)
``random-scale``              scale (0.95, 1.05)                          RandZoom(0.95, 1.05, keep_size)
``deepstack``                 nnU-Net v1 2D default: elastic alpha        Rand2DElastic (control-grid spacing side/8,
                              (0, 200) sigma (9, 13) p 0.2; rotation      magnitude (0, 2), p 0.2: an approximation of the
                              +-180 p 0.2; scale (0.85, 1.25) p 0.2;      alpha/sigma field), RandRotate(+-180, p 0.2),
                              gamma (0.7, 1.5) p 0.3 retain_stats;        RandZoom(0.85, 1.25, p 0.2), RandAdjustContrast
                              mirror (0, 1)                               (retain_stats, p 0.3), RandFlip both axes
============================  ==========================================  ==================================================

In the code snapshot the DeepStack branch is unreachable (spec B.11: "DeepStack" ran as baseline + min-max); here it
is the stack the paper describes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

#: Transform names (Table II rows) in the table's order.
AUGMENTS = ("random-contrast", "random-gamma", "random-brightness", "random-noise", "random-resolution",
            "random-mirror", "random-rotate", "random-scale", "deepstack")
#: Table II's row names -> transform names (classic-aug's ``transform``).
TABLE_NAMES = {"RandomContrast": "random-contrast", "RandomGamma": "random-gamma", "RandomBrightness": "random-brightness",
               "RandomNoise": "random-noise", "RandomResolution": "random-resolution", "RandomMirror": "random-mirror",
               "RandomRotate": "random-rotate", "RandomScale": "random-scale", "DeepStack": "deepstack"}
#: Names that move pixels (image and mask alike).
GEOMETRIC = frozenset({"random-mirror", "random-rotate", "random-scale", "deepstack"})


def check_names(names: Sequence[str], where: str = "augment") -> None:
    """Raise ValueError with one line naming an unknown transform."""
    for name in names:
        if name not in AUGMENTS:
            raise ValueError(f"{where}: unknown augmentation '{name}'; valid: {', '.join(AUGMENTS)}")


class _GaussianShift:
    """Additive brightness N(mu, sigma) per sample (batchgenerators' BrightnessTransform, p = 1)."""

    def __init__(self, sigma: float = 0.5, mu: float = 0.0) -> None:
        self.sigma, self.mu = sigma, mu
        self.R = np.random.RandomState()

    def set_random_state(self, seed: int | None = None, state: Any = None) -> _GaussianShift:
        self.R = state if state is not None else np.random.RandomState(seed)
        return self

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "image": data["image"] + float(self.R.normal(self.mu, self.sigma))}


class _Maybe:
    """Apply ``transform`` with probability ``p`` (batchgenerators' p_per_sample)."""

    def __init__(self, transform: Any, p: float) -> None:
        self.transform, self.p = transform, p
        self.R = np.random.RandomState()

    def set_random_state(self, seed: int | None = None, state: Any = None) -> _Maybe:
        self.R = state if state is not None else np.random.RandomState(seed)
        self.transform.set_random_state(seed=int(self.R.randint(2 ** 31)))
        return self

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.transform(data) if self.R.rand() < self.p else data


def build(name: str, side: int) -> Any:
    """The MONAI (dictionary, keys ``image`` / ``label``) transform of ``name`` for images of side ``side``."""
    from monai import transforms as mt

    both, image = ["image", "label"], ["image"]
    modes = ("bilinear", "nearest")
    if name == "random-contrast":
        return mt.RandScaleIntensityFixedMeand(image, prob=1.0, factors=0.25, preserve_range=True, fixed_mean=True)
    if name == "random-gamma":
        return mt.RandAdjustContrastd(image, prob=1.0, gamma=(0.7, 1.5))
    if name == "random-brightness":
        return _GaussianShift(0.5)
    if name == "random-noise":
        return mt.RandGaussianNoised(image, prob=1.0, mean=0.0, std=0.05, sample_std=True)
    if name == "random-resolution":
        return mt.RandGaussianSmoothd(image, sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), prob=0.5)
    if name == "random-mirror":
        return _Maybe(mt.Compose([mt.RandFlipd(both, prob=0.5, spatial_axis=0),
                                  mt.RandFlipd(both, prob=0.5, spatial_axis=1)]), 0.75)
    if name == "random-rotate":
        return mt.RandRotated(both, range_x=math.radians(5), prob=1.0, mode=modes, padding_mode="zeros")
    if name == "random-scale":
        return mt.RandZoomd(both, min_zoom=0.95, max_zoom=1.05, prob=1.0, mode=("bilinear", "nearest-exact"), keep_size=True)
    if name == "deepstack":
        return mt.Compose([
            mt.Rand2DElasticd(both, spacing=(max(side // 8, 2),) * 2, magnitude_range=(0.0, 2.0), prob=0.2, mode=modes,
                              padding_mode="zeros"),
            mt.RandRotated(both, range_x=math.pi, prob=0.2, mode=modes, padding_mode="zeros"),
            mt.RandZoomd(both, min_zoom=0.85, max_zoom=1.25, prob=0.2, mode=("bilinear", "nearest-exact"), keep_size=True),
            mt.RandAdjustContrastd(image, prob=0.3, gamma=(0.7, 1.5), retain_stats=True),
            mt.RandFlipd(both, prob=0.5, spatial_axis=0), mt.RandFlipd(both, prob=0.5, spatial_axis=1)])
    check_names([name])
    raise AssertionError(name)  # unreachable


class OnlineAugment:
    """Per-sample classical augmentation of a mini-batch (DiffBoost Table II arms).

    Attributes:
        names: transforms applied in order to every sample (`AUGMENTS`).
        renorm: ``minmax`` (code: per-sample min-max normalisation after the transform) or ``clip`` to [0, 1].
    """

    def __init__(self, names: Sequence[str], side: int, renorm: Literal["minmax", "clip"] = "minmax") -> None:
        check_names(names)
        if renorm not in ("minmax", "clip"):
            raise ValueError(f"augment renorm must be 'minmax' or 'clip', got '{renorm}'")
        self.names, self.renorm = tuple(names), renorm
        self.transforms = [build(n, side) for n in self.names]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment images ``x`` (B, C, H, W) in [0, 1] and float masks ``y`` (B, 1, H, W) alike; seeded by
        ``generator`` (one draw per sample), so a resumed training draws the same transforms."""
        xs, ys = [], []
        for i in range(len(x)):
            seed = int(torch.randint(2 ** 31 - 1, (1,), generator=generator))
            rng = np.random.RandomState(seed)
            data = {"image": x[i] * 2 - 1, "label": y[i]}
            for t in self.transforms:
                t.set_random_state(seed=int(rng.randint(2 ** 31 - 1)))
                data = t(data)
            img = torch.as_tensor(data["image"]).float()
            lab = (torch.as_tensor(data["label"]).float() > 0.5).float()
            if self.renorm == "minmax":
                lo, hi = img.amin(), img.amax()
                img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
            else:
                img = ((img + 1) / 2).clamp(0, 1)
            xs.append(img)
            ys.append(lab)
        return torch.stack(xs), torch.stack(ys)

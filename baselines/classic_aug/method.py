"""classic-aug: new pairs from standard geometric and photometric transforms of real pairs.

The non-generative reference point for every augmentation table: each condition
names a real pair (its mask, with the real image as ``reference``), and the
generator returns a randomly transformed copy. Geometric transforms are applied
to image and mask together through ``torchvision.transforms.v2`` (the mask as a
``tv_tensors.Mask``, so it is resampled with nearest neighbour); photometric
ones touch the image only.

With a ``transform`` (one of DiffBoost's Table II arms by the table's name: ``RandomContrast`` ... ``DeepStack``,
`bench.downstream.augment`) nothing new is made offline: each returned pair is its real condition unchanged,
declaring the ``augment`` training hook (`bench.downstream.hooks`), and seg-aug's augmented arm then trains on the
real pairs with those transforms drawn afresh per sample and mini-batch (the epoch length, so the optimiser steps, of
the real-only arm; spec C.2). The returned pairs only carry the declaration and are not trained on.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed


@dataclass(frozen=True)
class ClassicAugConfig:
    """Transform strengths (common segmentation-augmentation defaults; no paper prescribes them)."""

    hflip: float = 0.5
    """Probability of a horizontal flip."""
    vflip: float = 0.5
    """Probability of a vertical flip."""
    degrees: float = 30.0
    """Maximum absolute rotation, degrees."""
    translate: float = 0.1
    """Maximum translation as a fraction of the side."""
    scale: tuple[float, float] = (0.85, 1.15)
    """Range of the isotropic scale factor."""
    brightness: float = 0.2
    """ColorJitter brightness."""
    contrast: float = 0.2
    """ColorJitter contrast."""
    saturation: float = 0.2
    """ColorJitter saturation."""
    hue: float = 0.02
    """ColorJitter hue."""
    transform: str | None = None
    """A DiffBoost Table II arm as an online training transform instead of offline copies (see the module doc):
    RandomContrast, RandomGamma, RandomBrightness, RandomNoise, RandomResolution, RandomMirror, RandomRotate,
    RandomScale or DeepStack (nnU-Net v1's 2D stack). None: offline transformed copies (the thesis' classic baseline)."""
    online_renorm: str = "minmax"
    """After an online transform: ``minmax`` (DiffBoost's code: per-sample min-max normalisation) or ``clip``."""

    def validate(self) -> None:
        from bench.config import ConfigError

        for name in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"method.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale[0] <= self.scale[1] or len(self.scale) != 2:
            raise ConfigError(f"method.scale must be [low, high] with 0 < low <= high, got {list(self.scale)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"method.hue must be in [0, 0.5], got {self.hue}")
        from bench.downstream.augment import TABLE_NAMES

        if self.transform is not None and self.transform not in TABLE_NAMES:
            raise ConfigError(f"method.transform: unknown transform '{self.transform}'; valid: {', '.join(TABLE_NAMES)}")
        if self.online_renorm not in ("minmax", "clip"):
            raise ConfigError(f"method.online_renorm must be minmax or clip, got '{self.online_renorm}'")


class ClassicAug(GeneratorBase):
    """Random flips, affine transform and colour jitter of a given real pair."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        accepts=frozenset({"mask", "reference"}), returns=frozenset({"image", "mask"}),
        requires=frozenset({"mask", "reference"}))
    Config = ClassicAugConfig
    version: ClassVar[str] = "1"
    #: added with DiffBoost's Table II arms (issue 21): at their defaults the baseline is unchanged
    options_added_later: ClassVar[frozenset[str]] = frozenset({"transform", "online_renorm"})

    def __init__(self, config: ClassicAugConfig | None = None) -> None:
        super().__init__(config)
        self._transform = None

    def _build(self) -> object:
        from torchvision.transforms import v2

        c = self.config
        return v2.Compose([
            v2.RandomHorizontalFlip(c.hflip),
            v2.RandomVerticalFlip(c.vflip),
            v2.RandomAffine(degrees=c.degrees, translate=(c.translate, c.translate), scale=tuple(c.scale)),
            v2.ColorJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation, hue=c.hue),
        ])

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from torchvision import tv_tensors

        if self.config.transform:
            from bench.downstream.augment import TABLE_NAMES

            hook = {"kind": "augment", "transforms": [TABLE_NAMES[self.config.transform]],
                    "renorm": self.config.online_renorm}
            for cond in conditions:
                yield Sample(image=cond.reference.float(), mask=cond.mask.bool(),
                             meta={"source_id": cond.meta.get("source_id"), "train_hook": hook})
            return
        if self._transform is None:
            self._transform = self._build()
        for cond in conditions:
            # Seeded by the condition's index in the task, so a resumed run draws the same transforms.
            torch.manual_seed(derive_seed(ctx.seed, int(cond.meta.get("index", 0))))
            image = tv_tensors.Image(cond.reference.float())
            mask = tv_tensors.Mask(cond.mask.to(torch.uint8))
            if image.shape[-2:] != mask.shape[-2:]:
                raise ValueError(f"reference image {tuple(image.shape[-2:])} and mask {tuple(mask.shape[-2:])} differ in size")
            out_image, out_mask = self._transform(image, mask)
            yield Sample(image=out_image.as_subclass(torch.Tensor).clamp(0, 1), mask=out_mask.as_subclass(torch.Tensor) > 0,
                         meta={"source_id": cond.meta.get("source_id")})

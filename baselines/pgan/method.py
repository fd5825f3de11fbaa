"""pgan: Progressive Growing of GANs (Karras et al. 2018; the thesis cites Baur et al. 2018's skin-lesion use),
the "PGAN" baseline of thesis Tables 4.1, 4.2 and 4.4 (ch. 4 sections 4.4.2-4.4.3).

Unconditional: one model on all training images (derm-quality) or one per class (derm-cls), see
`bench.gan.per_class`. Model: `baselines.pgan.model`; defaults are the thesis's stated settings
(256 px, 20 000 steps, batch 32, AdamW lr 1e-3 (0.9, 0.999) wd 1e-2) with the PGAN paper's WGAN-GP loss,
drift term, EMA and progressive growing from 4 px; ``optimizer: adam, beta1: 0, beta2: 0.99`` is the paper's
optimizer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from torch import nn

from bench.gan.per_class import PerClassGAN
from bench.gan.progressive import Stage, levels, stage_at
from bench.gan.train import GANConfig


@dataclass(frozen=True)
class PGANConfig(GANConfig):
    """PGAN options (defaults: the paper profile)."""

    channel_base: int = 16384
    """Feature maps at side r: channel_base / r, capped (PGAN: 512 up to 32 px, halving to 64 at 256 px)."""
    channels_max: int = 512
    """Cap on feature maps (PGAN: 512)."""
    progressive: bool = True
    """Progressive growing (PGAN section 3); False trains all layers at full resolution from the start."""
    start_resolution: int = 4
    """First resolution of the growing schedule (PGAN: 4)."""
    fade_fraction: float = 0.5
    """Share of each later level's steps spent fading it in (PGAN: 800k of 1.6M images per level = 0.5)."""
    mbstd_group: int = 4
    """Minibatch-stddev group size (PGAN: 4)."""

    def validate(self) -> None:
        super().validate()
        from bench.config import ConfigError

        if self.resolution is not None:
            try:
                levels(self.start_resolution, self.resolution)
            except ValueError as exc:
                raise ConfigError(f"method.start_resolution: {exc}") from None
        if not 0.0 <= self.fade_fraction <= 1.0:
            raise ConfigError(f"method.fade_fraction must be in [0, 1], got {self.fade_fraction}")


class PGAN(PerClassGAN):
    """Progressive-growing GAN(s), one per class with labelled data; returns images."""

    Config = PGANConfig
    version: ClassVar[str] = "1"

    def build_generator(self, resolution: int) -> nn.Module:
        from baselines.pgan.model import PGANGenerator

        c = self.config
        return PGANGenerator(resolution, c.latent_dim, c.channel_base, c.channels_max)

    def build_discriminator(self, resolution: int) -> nn.Module:
        from baselines.pgan.model import PGANDiscriminator

        c = self.config
        return PGANDiscriminator(resolution, c.channel_base, c.channels_max, c.mbstd_group)

    def schedule(self, resolution: int) -> Callable[[int], Stage] | None:
        c = self.config
        if not c.progressive:
            return None
        return partial(stage_at, total_steps=c.steps, start=min(c.start_resolution, resolution), final=resolution,
                       fade_fraction=c.fade_fraction)

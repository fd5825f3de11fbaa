"""sl-stylegan: the skin-lesion style-based GAN of Qin et al. 2020 (Comput. Methods Programs Biomed. 195:105568),
the "SL-StyleGAN" baseline of thesis Tables 4.1, 4.2 and 4.4 (ch. 4 sections 4.4.2-4.4.3).

Unconditional: one model on all training images (derm-quality) or one per class (derm-cls), see
`bench.gan.per_class`. Model: `baselines.sl_stylegan.model`. Defaults are the thesis's stated settings (256 px,
20 000 steps, batch 32, AdamW lr 1e-3 (0.9, 0.999) wd 1e-2) with StyleGAN's non-saturating logistic loss,
R1 (gamma 10), style mixing 0.9 and an EMA generator; ``optimizer: adam, beta1: 0, beta2: 0.99`` is StyleGAN's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bench.gan.losses import LossKind
from bench.gan.per_class import PerClassGAN
from bench.gan.train import GANConfig


@dataclass(frozen=True)
class SLStyleGANConfig(GANConfig):
    """SL-StyleGAN options (defaults: the paper profile)."""

    loss: LossKind = "logistic"
    """Non-saturating logistic loss with R1 (StyleGAN; Qin et al. build on it) or ``wgan-gp``."""
    channel_base: int = 16384
    """Feature maps at side r: channel_base / r, capped (StyleGAN: 512 up to 32 px, 64 at 256 px)."""
    channels_max: int = 512
    """Cap on feature maps (StyleGAN: 512)."""
    mapping_layers: int = 8
    """Layers of the mapping network (StyleGAN: 8)."""
    mapping_lr_mul: float = 0.01
    """Learning-rate multiplier of the mapping network (StyleGAN: 0.01)."""
    style_mixing: float = 0.9
    """Probability of style-mixing regularisation per training sample (StyleGAN: 0.9)."""
    noise: bool = True
    """Per-pixel noise inputs (StyleGAN)."""
    mbstd_group: int = 4
    """Minibatch-stddev group size of the discriminator (StyleGAN: 4)."""
    truncation: float = 1.0
    """Truncation psi at sampling (1: none; FID in StyleGAN is computed without truncation)."""


class SLStyleGAN(PerClassGAN):
    """Style-based GAN(s), one per class with labelled data; returns images."""

    Config = SLStyleGANConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"truncation"})

    def build_generator(self, resolution: int) -> nn.Module:
        from baselines.sl_stylegan.model import StyleGenerator

        c = self.config
        return StyleGenerator(resolution, c.latent_dim, c.latent_dim, c.channel_base, c.channels_max,
                              c.mapping_layers, c.mapping_lr_mul, c.style_mixing, c.noise)

    def build_discriminator(self, resolution: int) -> nn.Module:
        from baselines.sl_stylegan.model import ResidualDiscriminator

        c = self.config
        return ResidualDiscriminator(resolution, c.channel_base, c.channels_max, c.mbstd_group)

    def sample(self, gen: nn.Module, rng: torch.Generator) -> torch.Tensor:
        return gen(**gen.sample_inputs(1, rng), truncation=self.config.truncation)

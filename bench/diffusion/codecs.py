"""Codecs: the map between images in [0, 1] and the space the diffusion model works in.

`VaeCodec` wraps a Stable Diffusion `AutoencoderKL` (latents scaled by ``vae.config.scaling_factor``);
`IdentityCodec` serves pixel-space models such as mini-sd (images mapped to [-1, 1]). Both follow the
`Codec` protocol, so samplers, inversion and guidance never ask which one they hold.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)


@runtime_checkable
class Codec(Protocol):
    """Images (N, C, H, W) in [0, 1] <-> model space (N, c, h, w)."""

    #: channels of the model space
    channels: int
    #: spatial downsampling factor (8 for SD's VAE, 1 for pixel space)
    factor: int

    def encode(self, images: Any, generator: Any = None) -> Any:
        """(N, C, H, W) in [0, 1] -> (N, c, H / factor, W / factor)."""
        ...

    def decode(self, latents: Any) -> Any:
        """(N, c, h, w) -> (N, C, h * factor, w * factor) in [0, 1]."""
        ...


class IdentityCodec:
    """Pixel space: ``encode`` maps [0, 1] to [-1, 1], ``decode`` maps back and clamps.

    Args:
        channels: image channels (3 for RGB models, 1 for grayscale ones).
    """

    factor = 1

    def __init__(self, channels: int = 3) -> None:
        self.channels = channels

    def encode(self, images: Any, generator: Any = None) -> Any:
        if images.shape[1] != self.channels:
            if images.shape[1] == 1 and self.channels == 3:
                images = images.expand(-1, 3, -1, -1)
            else:
                raise ValueError(f"IdentityCodec({self.channels} channels) got images with {images.shape[1]} channels")
        return images * 2.0 - 1.0

    def decode(self, latents: Any) -> Any:
        return ((latents + 1.0) / 2.0).clamp(0.0, 1.0)


class VaeCodec:
    """A Stable Diffusion VAE. Latents are ``vae.encode(2x - 1) * scaling_factor`` (mean of the posterior,
    or a sample from it when a ``generator`` is given), as in the SD training scripts.

    Args:
        vae: a diffusers `AutoencoderKL`.
        sample_posterior: draw from the posterior instead of taking its mean (the SD fine-tuning scripts sample).
    """

    def __init__(self, vae: Any, sample_posterior: bool = False) -> None:
        self.vae = vae
        self.sample_posterior = sample_posterior
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.channels = int(vae.config.latent_channels)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def encode(self, images: Any, generator: Any = None) -> Any:
        x = images.to(device=self.vae.device, dtype=self.vae.dtype) * 2.0 - 1.0
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator) if (self.sample_posterior or generator is not None) else dist.mean
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, latents: Any) -> Any:
        z = latents.to(dtype=self.vae.dtype) / self.scaling_factor + self.shift_factor
        return ((self.vae.decode(z).sample.float() + 1.0) / 2.0).clamp(0.0, 1.0)

"""The GAN training loop shared by the GAN baselines, and the options it reads.

Generators implement ``train_inputs(n, rng) -> dict`` (their latent inputs for a training batch) and
``forward(**inputs, stage=...)``; discriminators ``forward(x, stage=...)``. ``stage`` is a
`bench.gan.progressive.Stage` (None for fixed-resolution models). Real images are uint8 (N, 3, R, R);
they are scaled to [-1, 1] per batch, average-pooled to the stage resolution and, while a level fades in,
blended with their 2x-downsampled copy as in PGAN section A.1.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.gan.ema import ema_decay_at, ema_update
from bench.gan.losses import LossKind, d_loss, g_loss, gradient_penalty, r1_penalty
from bench.gan.progressive import Stage
from bench.interface import Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GANConfig:
    """Options shared by the GAN baselines; defaults are the thesis's stated settings (ch. 4 section 4.4,
    "same optimizers as DM"), the rest [I] from the original papers."""

    resolution: int | None = 256
    """Side of the generated images, a power of two (thesis: 256); None: the training images' side."""
    latent_dim: int = 512
    """Dimension of the latent z (PGAN and StyleGAN: 512)."""
    steps: int = 20000
    """Training steps per model (thesis: 20 000)."""
    batch_size: int = 32
    """Batch size (thesis: 32)."""
    lr: float = 1e-3
    """Learning rate of G and D (thesis: 1e-3; PGAN and StyleGAN papers: 1e-3 too)."""
    optimizer: Literal["adamw", "adam"] = "adamw"
    """``adamw`` (thesis) or ``adam`` (the GAN papers, with beta1 0 and beta2 0.99)."""
    beta1: float = 0.9
    """Adam beta1 (thesis 0.9; PGAN / StyleGAN 0.0)."""
    beta2: float = 0.999
    """Adam beta2 (thesis 0.999; PGAN / StyleGAN 0.99)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (thesis 1e-2; ignored by ``adam``)."""
    loss: LossKind = "wgan-gp"
    """``wgan-gp`` (PGAN paper) or ``logistic`` (non-saturating, StyleGAN paper)."""
    gp_weight: float = 10.0
    """WGAN-GP penalty weight lambda (PGAN: 10)."""
    drift: float = 1e-3
    """WGAN drift term epsilon_drift on E[D(real)^2] (PGAN: 1e-3)."""
    r1_gamma: float = 10.0
    """R1 weight gamma with the logistic loss (StyleGAN: 10; 0 = off)."""
    r1_every: int = 1
    """Apply R1 every this many steps, scaled up to match (StyleGAN2's lazy regularisation uses 16)."""
    n_critic: int = 1
    """Discriminator steps per generator step (PGAN: 1)."""
    ema_decay: float = 0.999
    """Decay of the EMA of generator weights used for sampling (PGAN: 0.999; 0 = sample the raw G) [I: thesis
    silent]."""
    xflip: bool = False
    """Random horizontal flips of the training images [I: not stated]."""
    per_class: bool = True
    """One model per class when the training samples carry labels (thesis Exp. 2); False: one model on all."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.resolution is not None and (self.resolution < 4 or self.resolution & (self.resolution - 1)):
            raise ConfigError(f"method.resolution must be a power of two >= 4 or null, got {self.resolution}")
        for key in ("steps", "batch_size", "n_critic", "r1_every", "latent_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"method.ema_decay must be in [0, 1), got {self.ema_decay}")


def images_uint8(samples: Sequence[Sample], resolution: int) -> torch.Tensor:
    """The samples' images as uint8 (N, 3, resolution, resolution), squashed as the tasks do."""
    from bench.tasks.common import resize_image

    out = torch.empty((len(samples), 3, resolution, resolution), dtype=torch.uint8)
    for i, s in enumerate(samples):
        img = s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1)
        out[i] = (resize_image(img, resolution) * 255).round().to(torch.uint8)
    return out


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> image in [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


def make_optimizer(params: Sequence[nn.Parameter] | object, c: GANConfig) -> torch.optim.Optimizer:
    """AdamW (thesis) or Adam (papers) with the configured betas."""
    if c.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
    return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2))


def real_batch(images: torch.Tensor, idx: torch.Tensor, stage: Stage | None, flip: torch.Tensor | None) -> torch.Tensor:
    """Real images ``idx`` in [-1, 1] at the stage resolution, faded as the generator is."""
    x = images[idx].float() / 127.5 - 1.0
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if stage is None:
        return x
    if x.shape[-1] != stage.resolution:
        x = F.avg_pool2d(x, x.shape[-1] // stage.resolution)
    if stage.alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = low + (x - low) * stage.alpha
    return x


def train_gan(gen: nn.Module, disc: nn.Module, images: torch.Tensor, c: GANConfig, seed: int,
              schedule: Callable[[int], Stage] | None = None,
              advance: Callable[..., None] | None = None,
              device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, float]]:
    """Train ``gen`` against ``disc`` on uint8 ``images`` for ``c.steps`` steps.

    Latents and batch indices come from a CPU generator seeded by ``seed``; batches move to ``device``.
    Returns the generator to sample from (the EMA copy when ``c.ema_decay > 0``, else ``gen``; in eval mode)
    and a summary (final losses, seconds). Deterministic for a fixed ``seed`` and thread count.
    """
    torch.manual_seed(seed)  # noise inputs and penalty mixing weights come from the global RNG
    rng = torch.Generator().manual_seed(seed)
    gen, disc = gen.to(device), disc.to(device)
    g_ema = copy.deepcopy(gen).eval().requires_grad_(False) if c.ema_decay > 0 else None
    opt_g, opt_d = make_optimizer(gen.parameters(), c), make_optimizer(disc.parameters(), c)
    n = images.shape[0]
    t0 = time.perf_counter()
    ld = lg = torch.zeros(())
    gen.train()
    disc.train()
    for step in range(c.steps):
        stage = schedule(step) if schedule is not None else None
        critic = (lambda x: disc(x, stage=stage))
        for _ in range(c.n_critic):
            idx = torch.randint(n, (c.batch_size,), generator=rng)
            flip = torch.rand(c.batch_size, generator=rng) < 0.5 if c.xflip else None
            real = real_batch(images, idx, stage, flip).to(device)
            with torch.no_grad():
                fake = gen(**_to(gen.train_inputs(c.batch_size, rng), device), stage=stage)
            real_out = critic(real)
            ld = d_loss(c.loss, real_out, critic(fake))
            if c.loss == "wgan-gp":
                eps = torch.rand(c.batch_size, generator=rng).to(device)
                ld = ld + c.gp_weight * gradient_penalty(critic, real, fake, eps) + c.drift * real_out.pow(2).mean()
            elif c.r1_gamma > 0 and step % c.r1_every == 0:
                ld = ld + c.r1_gamma / 2 * c.r1_every * r1_penalty(critic, real)
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
        disc.requires_grad_(False)
        lg = g_loss(c.loss, critic(gen(**_to(gen.train_inputs(c.batch_size, rng), device), stage=stage)))
        opt_g.zero_grad(set_to_none=True)
        lg.backward()
        opt_g.step()
        disc.requires_grad_(True)
        if g_ema is not None:
            ema_update(g_ema, gen, ema_decay_at(step, c.ema_decay))
        if advance is not None:
            advance()
    summary = {"d_loss": float(ld.detach()), "g_loss": float(lg.detach()), "seconds": time.perf_counter() - t0}
    out = g_ema if g_ema is not None else gen
    return out.eval(), summary


def _to(inputs: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

"""The Pix2Pix training loop (Isola et al. 2017, section 3.1 and 3.3): alternating D and G updates.

Per step, on a batch of (edge map a, image b) in [-1, 1]:
  D: L_D = (GAN(D(a, G(a)).detach(), fake) + GAN(D(a, b), real)) / 2     ("we divide the objective by 2 while
     optimizing D, which slows down the rate at which D learns relative to G")
  G: L_G = GAN(D(a, G(a)), real) + lambda_l1 * |b - G(a)|_1                (non-saturating: maximise log D(a, G(a)))
GAN = binary cross-entropy on the patch logits (``gan_mode: vanilla``, the paper's) or least squares (``lsgan``).
Adam (lr, betas (0.5, 0.999)) for both; the lr is constant for ``epochs`` epochs, then decays linearly to zero over
``decay_epochs`` more (the authors' code: 100 + 100).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.gan.conditional import adam_pair, set_lr


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """The GAN loss of patch logits against an all-real or all-fake target."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"unknown gan_mode '{mode}'; valid: vanilla, lsgan")


def lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """Multiplier of the base lr in 0-based ``epoch``: 1 for ``epochs`` epochs, then linear towards 0 (the authors'
    ``1 - max(0, epoch - epochs + 1) / (decay_epochs + 1)``)."""
    return 1.0 - max(0, epoch - epochs + 1) / float(decay_epochs + 1)


def train_pix2pix(generator: nn.Module, discriminator: nn.Module, pairs: Any, config: Any, seed: int,
                  device: Any = "cpu", advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Train ``generator`` and ``discriminator`` in place on (edge map, image) pairs.

    Args:
        pairs: ``(edges, images)`` tensors, (N, C_in, R, R) and (N, 3, R, R) in [0, 1], or an object with ``len()``
            and ``batch(indices) -> (edges, images)`` that reads them on demand (a large fit set).
        config: a `Pix2PixConfig` (epochs, decay_epochs, batch_size, lr, beta1, beta2, lambda_l1, gan_mode).
        seed: seeds the batch order and dropout.

    Returns:
        one log row per step (``epoch``, ``step``, ``lr``, ``d``, ``g_gan``, ``g_l1``).
    """
    c = config
    opt_g, opt_d = adam_pair(generator, discriminator, c)
    gen = torch.Generator().manual_seed(seed)
    generator.train()
    discriminator.train()
    log: list[dict[str, float]] = []
    step = 0
    if isinstance(pairs, tuple):
        edges, images = pairs
        n, batch_of = len(images), (lambda idx: (edges[idx], images[idx]))
    else:
        n, batch_of = len(pairs), pairs.batch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout draws from the global generator
        for epoch in range(c.epochs + c.decay_epochs):
            lr = c.lr * lr_factor(epoch, c.epochs, c.decay_epochs)
            set_lr((opt_g, opt_d), lr)
            order = torch.randperm(n, generator=gen)
            for start in range(0, len(order), c.batch_size):
                edge_batch, image_batch = batch_of(order[start:start + c.batch_size])
                a = edge_batch.to(device) * 2 - 1
                b = image_batch.to(device) * 2 - 1
                fake = generator(a)
                # D step on the pair with G's output detached
                discriminator.requires_grad_(True)
                loss_d = 0.5 * (gan_loss(discriminator(torch.cat([a, fake.detach()], 1)), False, c.gan_mode)
                                + gan_loss(discriminator(torch.cat([a, b], 1)), True, c.gan_mode))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                # G step through the updated D (whose weights get no gradient)
                discriminator.requires_grad_(False)
                loss_gan = gan_loss(discriminator(torch.cat([a, fake], 1)), True, c.gan_mode)
                loss_l1 = F.l1_loss(fake, b)
                loss_g = loss_gan + c.lambda_l1 * loss_l1
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                log.append({"epoch": epoch, "step": step, "lr": lr, "d": float(loss_d.detach()),
                            "g_gan": float(loss_gan.detach()), "g_l1": float(loss_l1.detach())})
                step += 1
                if advance is not None:
                    advance()
    discriminator.requires_grad_(True)
    return log

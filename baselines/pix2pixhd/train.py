"""The Pix2PixHD training loop (Wang et al. 2018, sections 3.2 and 4): alternating D and G updates.

Per step, on a batch of (label map s, image x), with one D for all three calls:
  G: L_G = LSGAN(D(s, G(s)), real) + lambda_feat * L_FM + lambda_vgg * L_VGG, then
  D: L_D = (LSGAN(D(s, G(s).detach()), fake) + LSGAN(D(s, x), real)) / 2
Adam (lr, betas) for both; the learning rate is constant, then decays linearly to zero over the last
``decay_epochs`` epochs (paper: 100 + 100 epochs).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.gan.conditional import adam_pair, set_lr

from .losses import VGGLoss, feature_matching_loss, lsgan_loss


def lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """Multiplier of the base lr in 0-based ``epoch``: 1, then linear to 1/decay_epochs in the last epoch."""
    if decay_epochs <= 0:
        return 1.0
    return min(1.0, (epochs - epoch) / decay_epochs)


def train_pix2pixhd(generator: nn.Module, discriminator: nn.Module, labels: torch.Tensor, images: torch.Tensor,
                    config: Any, seed: int, vgg: VGGLoss | None = None, device: Any = "cpu",
                    advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Train ``generator`` and ``discriminator`` in place.

    Args:
        generator: maps (N, C_in, H, W) to images in [-1, 1].
        discriminator: a `MultiscaleDiscriminator` over (label map, image) concatenated on channels.
        labels: (N, C, H, W) label maps (`model.label_map`), without noise channels.
        images: (N, 3, H, W) in [0, 1], same H, W.
        config: a `Pix2PixHDConfig` (epochs, decay_epochs, batch_size, lr, beta1, beta2, lambda_feat,
            lambda_vgg, noise_channels).
        seed: seeds the batch order and the noise channels.
        vgg: the perceptual loss, or None when ``lambda_vgg`` is 0.
        advance: progress callback, called once per step.

    Returns:
        one log row per step (``epoch``, ``step``, ``lr``, ``d``, ``g_gan``, ``g_fm``, ``g_vgg``).
    """
    c = config
    opt_g, opt_d = adam_pair(generator, discriminator, c)
    gen = torch.Generator().manual_seed(seed)
    generator.train()
    discriminator.train()
    log: list[dict[str, float]] = []
    step = 0
    for epoch in range(c.epochs):
        lr = c.lr * lr_factor(epoch, c.epochs, c.decay_epochs)
        set_lr((opt_g, opt_d), lr)
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order), c.batch_size):
            idx = order[start:start + c.batch_size]
            s = labels[idx].to(device)
            x = images[idx].to(device) * 2 - 1
            g_in = s
            if c.noise_channels:
                noise = torch.randn((len(idx), c.noise_channels, *s.shape[-2:]), generator=gen).to(device)
                g_in = torch.cat([s, noise], 1)
            fake = generator(g_in)
            # Every D call sees the same D weights; G steps first, then D (D's grads from L_G are dropped).
            d_real = discriminator(torch.cat([s, x], 1))
            d_fake = discriminator(torch.cat([s, fake.detach()], 1))
            g_fake = discriminator(torch.cat([s, fake], 1))
            loss_gan = lsgan_loss(g_fake, True)
            loss_fm = feature_matching_loss(g_fake, d_real) if c.lambda_feat else torch.zeros(())
            loss_vgg = vgg((fake + 1) / 2, (x + 1) / 2) if vgg is not None and c.lambda_vgg else torch.zeros(())
            loss_g = loss_gan + c.lambda_feat * loss_fm + c.lambda_vgg * loss_vgg
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            loss_d = 0.5 * (lsgan_loss(d_fake, False) + lsgan_loss(d_real, True))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            log.append({"epoch": epoch, "step": step, "lr": lr, "d": float(loss_d.detach()),
                        "g_gan": float(loss_gan.detach()), "g_fm": float(loss_fm.detach()),
                        "g_vgg": float(loss_vgg.detach())})
            step += 1
            if advance is not None:
                advance()
    generator.eval()
    discriminator.eval()
    return log

"""GAN losses and gradient penalties.

* ``wgan-gp`` (PGAN, Karras et al. 2018 section A.1, after Gulrajani et al. 2017): critic loss
  E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2] + drift * E[D(real)^2], generator loss -E[D(fake)].
* ``logistic`` (StyleGAN, Karras et al. 2019 section 4/appendix C): non-saturating logistic loss
  softplus(D(fake)) + softplus(-D(real)) for D, softplus(-D(fake)) for G, with the R1 penalty
  gamma/2 * E[||grad D(real)||^2] (Mescheder et al. 2018).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

LossKind = Literal["wgan-gp", "logistic"]


def d_loss(kind: LossKind, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """Discriminator (critic) loss without penalties; outputs are raw scores of shape (N,) or (N, 1)."""
    if kind == "wgan-gp":
        return fake_out.mean() - real_out.mean()
    if kind == "logistic":
        return F.softplus(fake_out).mean() + F.softplus(-real_out).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def g_loss(kind: LossKind, fake_out: torch.Tensor) -> torch.Tensor:
    """Generator loss (WGAN: -E[D(fake)]; logistic: non-saturating softplus(-D(fake)))."""
    if kind == "wgan-gp":
        return -fake_out.mean()
    if kind == "logistic":
        return F.softplus(-fake_out).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def _input_grad(critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None, target: float = 1.0) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - target)^2] at x_hat = eps * real + (1 - eps) * fake.

    Args:
        critic: maps (N, C, H, W) to scores (N,) or (N, 1).
        real, fake: (N, C, H, W) batches.
        eps: (N,) mixing weights in [0, 1] (uniform random when None, from the global RNG).
        target: the norm the gradient is pulled to (1 in Gulrajani et al.).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device)
    e = eps.reshape(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = e * real.detach() + (1 - e) * fake.detach()
    norm = _input_grad(critic, x_hat).norm(2, dim=1)
    return (norm - target).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 penalty E[||grad_x D(x)||_2^2] on real data (multiply by gamma / 2 in the loss)."""
    return _input_grad(critic, real).pow(2).sum(dim=1).mean()

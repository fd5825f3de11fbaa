"""Layers of Karras et al. 2018 (Progressive Growing of GANs, section 4) used by the GAN baselines."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored as N(0, 1) / lr_mul and scaled at run time by
    ``lr_mul * gain / sqrt(fan_in)`` (PGAN section 4.1), so every weight has the same dynamic range."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = math.sqrt(2),
                 lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = lr_mul * gain / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)


class EqualizedConv2d(nn.Module):
    """Conv2d with equalized learning rate (run-time He scaling of N(0, 1) weights), 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 gain: float = math.sqrt(2), padding: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Pixelwise feature normalization: x / sqrt(mean_c(x^2) + eps) (PGAN section 4.2)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Appends the mean over features and pixels of the per-group standard deviation as extra channel(s)
    (PGAN section 3). Input (N, C, H, W) -> (N, C + n_channels, H, W); groups of ``group_size`` samples
    (the largest divisor of N not above it)."""

    def __init__(self, group_size: int = 4, n_channels: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size, self.n_channels, self.eps = group_size, n_channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        f = self.n_channels
        y = x.reshape(g, n // g, f, c // f, h, w)
        y = (y - y.mean(dim=0)).pow(2).mean(dim=0).add(self.eps).sqrt()   # std over the group
        y = y.mean(dim=(2, 3, 4))                                           # (n/g, f)
        y = y.reshape(n // g, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def fade_in(old: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    """Blend of the previous resolution's output ``old`` into the new layer's ``new``: exactly ``old`` at
    alpha 0 and exactly ``new`` at alpha 1 (PGAN Fig. 2)."""
    if alpha >= 1.0:
        return new
    if alpha <= 0.0:
        return old
    return old + (new - old) * alpha


def channels_at(resolution: int, channel_base: int, channels_max: int, channels_min: int = 1) -> int:
    """Feature maps at ``resolution``: ``channel_base / resolution`` clipped to [channels_min, channels_max]."""
    return max(channels_min, min(channels_max, channel_base // resolution))

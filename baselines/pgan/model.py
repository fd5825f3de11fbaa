"""PGAN generator and discriminator (Karras et al. 2018, Table 2 and section 4): pixel norm, equalized learning
rate, minibatch standard deviation, and progressive growing with fade-in (via `bench.gan.progressive.Stage`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.gan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, channels_at, fade_in
from bench.gan.progressive import Stage, levels


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class PGANGenerator(nn.Module):
    """z (N, latent_dim) -> image (N, 3, r, r), r the stage resolution (the full one without a stage), ~[-1, 1]."""

    def __init__(self, resolution: int, latent_dim: int = 512, channel_base: int = 16384, channels_max: int = 512) -> None:
        super().__init__()
        self.resolution, self.latent_dim = resolution, latent_dim
        self.levels = levels(4, resolution)
        ch = [channels_at(r, channel_base, channels_max) for r in self.levels]
        self.norm = PixelNorm()
        self.dense = EqualizedLinear(latent_dim, ch[0] * 16, gain=math.sqrt(2) / 4)  # 4x4 "conv" of Table 2
        self.conv4 = EqualizedConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(ch[i - 1], ch[i], 3), EqualizedConv2d(ch[i], ch[i], 3)])
            for i in range(1, len(self.levels)))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, 3, 1, gain=1.0) for c in ch)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv in self.blocks[i]:
            x = self.norm(_act(conv(x)))
        return x

    def forward(self, z: torch.Tensor, stage: Stage | None = None) -> torch.Tensor:
        res, alpha = (stage.resolution, stage.alpha) if stage is not None else (self.resolution, 1.0)
        k = self.levels.index(res)
        x = self.norm(_act(self.dense(self.norm(z)).view(z.shape[0], -1, 4, 4)))
        x = self.norm(_act(self.conv4(x)))
        prev = x
        for i in range(k):
            prev, x = x, self._block(i, x)
        rgb = self.to_rgb[k](x)
        if k > 0 and alpha < 1.0:
            rgb = fade_in(F.interpolate(self.to_rgb[k - 1](prev), scale_factor=2, mode="nearest"), rgb, alpha)
        return rgb

    def train_inputs(self, n: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        return {"z": torch.randn(n, self.latent_dim, generator=rng)}

    sample_inputs = train_inputs


class PGANDiscriminator(nn.Module):
    """Image (N, 3, r, r) at any level r -> critic score (N,); fades a new level's input in with the stage alpha."""

    def __init__(self, resolution: int, channel_base: int = 16384, channels_max: int = 512, mbstd_group: int = 4) -> None:
        super().__init__()
        self.levels = levels(4, resolution)
        ch = [channels_at(r, channel_base, channels_max) for r in self.levels]
        self.from_rgb = nn.ModuleList(EqualizedConv2d(3, c, 1) for c in ch)
        # blocks[i-1] takes level i down to level i-1
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(ch[i], ch[i], 3), EqualizedConv2d(ch[i], ch[i - 1], 3)])
            for i in range(1, len(self.levels)))
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualizedConv2d(ch[0] + 1, ch[0], 3)
        self.conv4 = EqualizedConv2d(ch[0], ch[0], 4, padding=0)
        self.out = EqualizedLinear(ch[0], 1, gain=1.0)

    def _block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[i]:
            h = _act(conv(h))
        return F.avg_pool2d(h, 2)

    def forward(self, x: torch.Tensor, stage: Stage | None = None) -> torch.Tensor:
        alpha = stage.alpha if stage is not None else 1.0
        k = self.levels.index(x.shape[-1])
        h = _act(self.from_rgb[k](x))
        if k > 0:
            h = self._block(k - 1, h)
            if alpha < 1.0:
                h = fade_in(_act(self.from_rgb[k - 1](F.avg_pool2d(x, 2))), h, alpha)
        for i in range(k - 1, 0, -1):
            h = self._block(i - 1, h)
        h = _act(self.conv(self.mbstd(h)))
        h = _act(self.conv4(h)).flatten(1)
        return self.out(h).squeeze(1)

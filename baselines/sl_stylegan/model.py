"""A compact style-based generator and discriminator for SL-StyleGAN (Qin et al. 2020, after StyleGAN,
Karras et al. 2019).

Generator: mapping network z -> w (pixel-normalised z, MLP with lr multiplier), a learned constant 4x4 input,
and per resolution two style-controlled 3x3 convolutions with per-pixel noise, plus a toRGB branch summed over
resolutions. Qin et al. "modify the structure of style control and noise input": style control here modulates
the convolution weights and normalises by the standard deviation only (no mean subtraction, as in StyleGAN2's
demodulation), noise and bias are added outside the style block after the convolution, and the constant input
gets no noise or style of its own [I: our reading of the abstract; the full text was not available].
Discriminator: residual blocks with minibatch standard deviation (the "adjusted discriminator" [I]).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.gan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, channels_at
from bench.gan.progressive import Stage, levels

SQRT2 = math.sqrt(2)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * SQRT2


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> w (N, w_dim): pixel norm, then ``n_layers`` equalized linear layers (lr x ``lr_mul``)."""

    def __init__(self, z_dim: int, w_dim: int, n_layers: int = 8, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.norm = PixelNorm()
        dims = [z_dim] + [w_dim] * n_layers
        self.layers = nn.ModuleList(EqualizedLinear(a, b, gain=1.0, lr_mul=lr_mul) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for layer in self.layers:
            x = _act(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a per-sample style s = A(w) (the style control), then,
    with ``demodulate``, normalised per output channel by its expected standard deviation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.affine = EqualizedLinear(w_dim, in_ch, gain=1.0, bias_init=1.0)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        s = self.affine(w)
        weight = self.weight[None] * self.scale * s[:, None, :, None, None]          # (N, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x.reshape(1, n * c, *x.shape[2:]), weight.reshape(-1, c, *weight.shape[3:]),
                       padding=self.padding, groups=n)
        return out.reshape(n, -1, *out.shape[2:])


class StyledConv(nn.Module):
    """Modulated 3x3 conv, then noise (learned per-layer strength) and bias, then leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool = False, noise: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, w)
        if self.noise_strength is not None:
            if noise is None:
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device)
            x = x + self.noise_strength * noise
        return _act(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


class StyleGenerator(nn.Module):
    """z (N, z_dim) -> image (N, 3, R, R) ~[-1, 1].

    ``forward(z, z2=None, crossover=None, noise=None, truncation=1.0)``: with ``z2``, style mixing: the layers
    from index ``crossover[i]`` on take sample i's style from z2; ``noise`` is a list of (N, 1, r, r) per
    styled layer (global-RNG noise when None); ``truncation`` < 1 pulls w towards the tracked mean ``w_avg``.
    """

    def __init__(self, resolution: int, z_dim: int = 512, w_dim: int = 512, channel_base: int = 16384,
                 channels_max: int = 512, mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 style_mixing: float = 0.9, noise: bool = True) -> None:
        super().__init__()
        self.resolution, self.z_dim, self.style_mixing = resolution, z_dim, style_mixing
        self.levels = levels(4, resolution)
        ch = [channels_at(r, channel_base, channels_max) for r in self.levels]
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.convs = nn.ModuleList([StyledConv(ch[0], ch[0], w_dim, noise=noise)])
        for i in range(1, len(self.levels)):
            self.convs.append(StyledConv(ch[i - 1], ch[i], w_dim, upsample=True, noise=noise))
            self.convs.append(StyledConv(ch[i], ch[i], w_dim, noise=noise))
        self.to_rgb = nn.ModuleList(ToRGB(c, w_dim) for c in ch)
        self.num_ws = len(self.convs) + 1
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, z2: torch.Tensor | None = None, crossover: torch.Tensor | None = None,
                noise: list[torch.Tensor] | None = None, truncation: float = 1.0,
                stage: Stage | None = None) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            self.w_avg.lerp_(w.detach().mean(0), 1 - 0.995)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if z2 is not None and crossover is not None:
            later = torch.arange(self.num_ws, device=z.device)[None] >= crossover[:, None]
            ws = torch.where(later[..., None], self.mapping(z2)[:, None], ws)
        if truncation != 1.0:
            ws = self.w_avg.lerp(ws, truncation)
        x = self.const.expand(z.shape[0], -1, -1, -1)
        rgb = None
        for j in range(len(self.levels)):
            layer_ids = [0] if j == 0 else [2 * j - 1, 2 * j]
            for li in layer_ids:
                x = self.convs[li](x, ws[:, li], None if noise is None else noise[li])
            y = self.to_rgb[j](x, ws[:, layer_ids[-1] + 1])
            rgb = y if rgb is None else F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + y
        return rgb

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, r, r) for j, r in enumerate(self.levels) for _ in range(1 if j == 0 else 2)]

    def train_inputs(self, n: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        z, z2 = torch.randn(n, self.z_dim, generator=rng), torch.randn(n, self.z_dim, generator=rng)
        mix = torch.rand(n, generator=rng) < self.style_mixing
        cut = torch.randint(1, self.num_ws, (n,), generator=rng)
        return {"z": z, "z2": z2, "crossover": torch.where(mix, cut, torch.full_like(cut, self.num_ws))}

    def sample_inputs(self, n: int, rng: torch.Generator) -> dict:
        z = torch.randn(n, self.z_dim, generator=rng)
        return {"z": z, "noise": [torch.randn(n, *s, generator=rng) for s in self.noise_shapes()]}


class ResidualDiscriminator(nn.Module):
    """Image (N, 3, R, R) -> score (N,): fromRGB, residual down blocks, minibatch stddev, conv, two dense layers."""

    def __init__(self, resolution: int, channel_base: int = 16384, channels_max: int = 512, mbstd_group: int = 4) -> None:
        super().__init__()
        self.levels = levels(4, resolution)
        ch = [channels_at(r, channel_base, channels_max) for r in self.levels]
        self.from_rgb = EqualizedConv2d(3, ch[-1], 1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(ch[i], ch[i], 3), EqualizedConv2d(ch[i], ch[i - 1], 3),
                           EqualizedConv2d(ch[i], ch[i - 1], 1, bias=False, gain=1.0)])
            for i in range(len(self.levels) - 1, 0, -1))
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualizedConv2d(ch[0] + 1, ch[0], 3)
        self.fc = EqualizedLinear(ch[0] * 16, ch[0])
        self.out = EqualizedLinear(ch[0], 1, gain=1.0)

    def forward(self, x: torch.Tensor, stage: Stage | None = None) -> torch.Tensor:
        h = _act(self.from_rgb(x))
        for conv1, conv2, skip in self.blocks:
            y = F.avg_pool2d(_act(conv2(_act(conv1(h)))), 2)
            h = (y + skip(F.avg_pool2d(h, 2))) / SQRT2
        h = _act(self.conv(self.mbstd(h)))
        return self.out(_act(self.fc(h.flatten(1)))).squeeze(1)

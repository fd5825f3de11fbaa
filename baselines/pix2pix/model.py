"""Pix2Pix's networks (Isola, Zhu, Zhou & Efros, CVPR 2017, section 3.2 and appendix 6.1), written from the paper.

* `UNetGenerator`: the encoder-decoder with skips. Encoder C64-C128-C256-C512-C512-C512-C512-C512 (``num_downs``
  4x4 stride-2 convs; widths ``ngf`` doubling, capped at 8 ngf), LeakyReLU 0.2, BatchNorm except on the first layer
  (and the innermost, as the authors' code); decoder CD512-CD512-CD512-C512-C256-C128-C64 (4x4 stride-2 transposed
  convs on the concatenation of the previous output and the mirrored encoder activation), ReLU, BatchNorm, dropout
  0.5 in the ``n_dropout`` (3) decoder layers after the innermost (the authors' code; the paper's list puts the first
  D on the innermost layer); a last transposed conv to the output channels and tanh. At fewer than 8 levels the
  three dropout layers are kept (narrower than 512).
* `PatchDiscriminator`: the 70x70 PatchGAN at ``n_layers`` 3: C64-C128-C256-C512 (4x4 convs, stride 2 except the
  last, which has stride 1), BatchNorm except on the first, LeakyReLU 0.2, then a stride-1 4x4 conv to one logit per
  patch. ``n_layers`` 1 gives a 16x16 PatchGAN, 2 a 34x34 one.
"""
from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"unknown norm '{kind}'; valid: batch, instance")


class _Block(nn.Module):
    """One U-Net level: down conv -> (inner block) -> up conv, with the skip concatenation around it."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, in_channels: int | None = None,
                 out_channels: int | None = None, norm: str = "batch", dropout: float = 0.0, outermost: bool = False,
                 innermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        cin = in_channels if in_channels is not None else outer
        bias = norm == "instance"  # a conv followed by batch norm needs no bias (authors' code)
        down = nn.Conv2d(cin, inner, 4, 2, 1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, out_channels or outer, 4, 2, 1)
            layers: list[nn.Module] = [down, sub, nn.ReLU(True), up, nn.Tanh()]  # type: ignore[list-item]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, _norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, _norm(norm, inner), sub, nn.ReLU(True), up,  # type: ignore[list-item]
                      _norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UNetGenerator(nn.Module):
    """U-Net with ``num_downs`` levels: a (N, in_channels, R, R) map -> (N, out_channels, R, R) in [-1, 1]
    (R divisible by 2 ** num_downs)."""

    def __init__(self, in_channels: int, out_channels: int, num_downs: int = 8, ngf: int = 64, norm: str = "batch",
                 dropout: float = 0.5, n_dropout: int = 3) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"the U-Net needs num_downs >= 2, got {num_downs}")
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(num_downs)]  # encoder output widths, outermost first
        block = _Block(widths[-1], widths[-1], None, norm=norm, innermost=True)
        # levels between the innermost and the outermost, inside out; the first n_dropout get dropout
        for depth, level in enumerate(range(num_downs - 2, 0, -1)):
            block = _Block(widths[level - 1], widths[level], block, norm=norm,
                           dropout=dropout if depth < n_dropout else 0.0)
        self.model = _Block(widths[0], widths[0], block, in_channels=in_channels, out_channels=out_channels,
                            norm=norm, outermost=True)
        # the outermost block wraps widths[0] -> widths[0]; its down conv maps in_channels -> ngf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN on the channel concatenation (condition, image): (N, C, H, W) -> (N, 1, h, w) patch logits."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), _norm(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), _norm(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(n_layers: int) -> int:
    """Side of the input patch one PatchGAN logit sees (70 at n_layers 3)."""
    size = 1
    for kernel, stride in reversed([(4, 2)] * n_layers + [(4, 1), (4, 1)]):
        size = (size - 1) * stride + kernel
    return size


@torch.no_grad()
def init_weights(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Conv weights ~ N(0, gain), norm weights ~ N(1, gain), biases 0 (paper: "weights were initialized from a
    Gaussian distribution with mean 0 and standard deviation 0.02")."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * gain)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(1 + torch.randn(m.weight.shape, generator=generator) * gain)
            m.bias.zero_()

"""Pix2PixHD networks (Wang et al., CVPR 2018, section 3.2), written from the paper.

* `GlobalGenerator` (G1): 7x7 conv stem, ``n_downsampling`` stride-2 3x3 convs, ``n_blocks`` residual blocks,
  as many stride-2 transposed convs, 7x7 conv to RGB, tanh; instance norm and reflection padding throughout.
* `LocalEnhancer` (G2 around G1): G1 (without its output layer) runs on the input downsampled by 2; G2's front-end
  runs on the full-resolution input; their feature maps are summed and G2's residual blocks and upsampling
  produce the output.
* `MultiscaleDiscriminator`: ``num_d`` PatchGAN discriminators of identical structure on the (mask, image) pair
  at full, 1/2, 1/4 ... resolution; every intermediate feature map is returned for feature matching.

Inputs are label maps (N, C_in, H, W); outputs are images in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


def _down2(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution by 3x3 average pooling (padding not counted), how every scale is made."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class ResidualBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _stem(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, 7), _norm(out_channels), nn.ReLU(True)]


def _down(in_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, 2 * in_channels, 3, stride=2, padding=1), _norm(2 * in_channels), nn.ReLU(True)]


def _up(in_channels: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(in_channels, in_channels // 2, 3, stride=2, padding=1, output_padding=1),
            _norm(in_channels // 2), nn.ReLU(True)]


def _to_rgb(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, 7), nn.Tanh()]


class GlobalGenerator(nn.Module):
    """G1: (N, in_channels, H, W) -> (N, out_channels, H, W) in [-1, 1]; H, W divisible by 2**n_downsampling."""

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 64, n_downsampling: int = 4,
                 n_blocks: int = 9, output_layer: bool = True) -> None:
        super().__init__()
        layers = _stem(in_channels, ngf)
        for i in range(n_downsampling):
            layers += _down(ngf * 2 ** i)
        layers += [ResidualBlock(ngf * 2 ** n_downsampling) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            layers += _up(ngf * 2 ** i)
        if output_layer:
            layers += _to_rgb(ngf, out_channels)
        self.body = nn.Sequential(*layers)
        self.factor = 2 ** n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LocalEnhancer(nn.Module):
    """G = {G1, G2} (paper section 3.2, "coarse-to-fine generator") with one local enhancer.

    G1 has ``2 * ngf`` base channels and runs on the input at half resolution; G2's front-end (7x7 stem + one
    stride-2 conv) maps the full-resolution input to G1's output width and size; the element-wise sum goes through
    G2's residual blocks, one transposed conv and the 7x7 output layer.
    """

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 32, n_downsampling_global: int = 3,
                 n_blocks_global: int = 9, n_blocks_local: int = 3) -> None:
        super().__init__()
        self.global_g = GlobalGenerator(in_channels, out_channels, 2 * ngf, n_downsampling_global, n_blocks_global,
                                        output_layer=False)
        self.front = nn.Sequential(*_stem(in_channels, ngf), *_down(ngf))
        self.back = nn.Sequential(*[ResidualBlock(2 * ngf) for _ in range(n_blocks_local)], *_up(2 * ngf),
                                  *_to_rgb(ngf, out_channels))
        self.factor = 2 * self.global_g.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x) + self.global_g(_down2(x)))


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (n_layers = 3): 4x4 convs, stride 2 except the last two, LeakyReLU 0.2, instance norm
    from the second layer on, width doubling up to 512; returns the list of every layer's output (the last is
    the (N, 1, h, w) patch score map)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True))]
        width = ndf
        for n in range(1, n_layers + 1):
            prev, width = width, min(2 * width, 512)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(prev, width, 4, stride=stride, padding=2), _norm(width),
                                        nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(width, 1, 4, stride=1, padding=2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs; D_k sees the input downsampled k times. Returns one feature list per scale,
    finest first."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for k, d in enumerate(self.scales):
            if k:
                x = _down2(x)
            out.append(d(x))
        return out


@torch.no_grad()
def init_weights(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Conv weights ~ N(0, gain), biases 0 (the pix2pix family's initialisation; the paper does not say)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * gain)
            if m.bias is not None:
                m.bias.zero_()


def label_map(masks: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, channels, H, W) float: 2 = one-hot (background, lesion), 1 = the mask in {0, 1}."""
    fg = masks.float()[:, None]
    return torch.cat([1 - fg, fg], 1) if channels == 2 else fg

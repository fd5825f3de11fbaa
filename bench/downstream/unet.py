"""U-Net (Ronneberger et al. 2015) and Attention U-Net (Oktay et al. 2018) for binary segmentation.

Both take images (N, C, H, W) in [0, 1] and return logits (N, 1, H, W); H and W
must be divisible by ``2 ** depth``. ``base`` is the width of the first level
(64 in the original papers); each level doubles it.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. (2018), Fig. 2.

    The gating signal ``g`` (coarser decoder features, already upsampled to the skip's
    size) and the skip ``x`` are projected to ``inter`` channels, summed, passed through
    ReLU, a 1x1 conv and a sigmoid, giving a per-pixel coefficient that scales ``x``.
    """

    def __init__(self, g_channels: int, x_channels: int, inter: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(g_channels, inter, 1), nn.BatchNorm2d(inter))
        self.w_x = nn.Sequential(nn.Conv2d(x_channels, inter, 1), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(F.relu(self.w_g(g) + self.w_x(x)))
        return x * alpha


class UNet(nn.Module):
    """Encoder-decoder with skip connections.

    Args:
        in_channels: image channels.
        base: channels of the first level.
        depth: number of down-sampling steps.
        attention: put an attention gate on every skip connection (Attention U-Net).
    """

    def __init__(self, in_channels: int = 3, base: int = 64, depth: int = 4, attention: bool = False) -> None:
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        self.encoders = nn.ModuleList([DoubleConv(in_channels, widths[0])] +
                                      [DoubleConv(widths[i], widths[i + 1]) for i in range(depth)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))])
        self.gates = nn.ModuleList([AttentionGate(widths[i], widths[i], max(widths[i] // 2, 1)) for i in reversed(range(depth))]) \
            if attention else None
        self.decoders = nn.ModuleList([DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by 2**depth={2 ** self.depth}")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for j, (up, dec) in enumerate(zip(self.ups, self.decoders)):
            x = up(x)
            skip = skips.pop()
            if self.gates is not None:
                skip = self.gates[j](x, skip)
            x = dec(torch.cat([skip, x], dim=1))
        return self.head(x)


def attention_unet(in_channels: int = 3, base: int = 64, depth: int = 4) -> UNet:
    """Attention U-Net (Oktay et al. 2018): a U-Net with additive attention gates on the skips."""
    return UNet(in_channels, base, depth, attention=True)

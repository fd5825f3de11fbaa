"""DCSAU-Net (Xu et al. 2023, "DCSAU-Net: A deeper and more compact split-attention U-Net for medical image
segmentation", Computers in Biology and Medicine 154), written from the paper and checked against the layer
layout of the authors' code (github.com/xq141839/DCSAU-Net, ``pytorch_dcsaunet``).

Structure (``base = 64``, ``depth = 4`` reproduces the published widths 64/128/256/512):

* stem: two 3x3 conv-BN-ReLU at full resolution (``base`` channels);
* encoder: ``depth - 1`` levels of max-pool + a CSA stage (two bottleneck blocks whose middle convolution is a
  *compact split-attention* unit) with ``base * 2**i`` output channels;
* bottleneck: max-pool + a depthwise-separable mixer (7x7 depthwise conv with residual, then 1x1 pointwise),
  applied ``mixer_depth`` = 12 times with shared weights, as in the authors' ``DC`` module;
* decoder: bilinear x2 up-sampling, concatenation with the skip, a CSA stage; a 1x1 head gives the logits.

Compact split attention (radix 2): a grouped 3x3 conv gives two splits ``x1, x2``; the second path is deepened,
``x2 = conv3x3(x1 + x2)``; channel attention from the pooled sum ``x1 + x2`` (two 1x1 convs, softmax over the two
splits) weights the splits, which are summed.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CompactSplitAttention(nn.Module):
    """The CSA unit (radix 2) on ``channels`` channels; ``inter_min`` floors the attention MLP width (code: 32)."""

    def __init__(self, channels: int, inter_min: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, padding=1, groups=2, bias=False),
                                  nn.BatchNorm2d(2 * channels), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        inter = max(channels * 2 // 4, inter_min)
        self.fc1 = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter), nn.ReLU(inplace=True))
        self.fc2 = nn.Conv2d(inter, 2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.conv(x).split(self.channels, dim=1)
        x2 = self.conv2(x1 + x2)
        gap = F.adaptive_avg_pool2d(x1 + x2, 1)
        att = self.fc2(self.fc1(gap)).view(x.shape[0], 2, self.channels, 1, 1).softmax(dim=1)
        return att[:, 0] * x1 + att[:, 1] * x2


class CSABottleneck(nn.Module):
    """1x1 reduce -> CSA -> (3x3 stride-1 average pool on the first block of a stage) -> 1x1 expand, residual."""

    expansion = 4

    def __init__(self, cin: int, planes: int, avg_pool: bool, inter_min: int = 32) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.reduce = nn.Sequential(nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True))
        self.csa = CompactSplitAttention(planes, inter_min)
        self.pool = nn.AvgPool2d(3, 1, padding=1) if avg_pool else nn.Identity()
        self.expand = nn.Sequential(nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if cin == cout
                         else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.pool(self.csa(self.reduce(x))))
        return F.relu(out + self.shortcut(x))


def csa_stage(cin: int, cout: int, blocks: int = 2, avg_pool: bool = True, inter_min: int = 32) -> nn.Sequential:
    """``blocks`` CSA bottlenecks mapping ``cin`` to ``cout`` channels (``cout`` divisible by 4)."""
    planes = cout // CSABottleneck.expansion
    layers = [CSABottleneck(cin, planes, avg_pool, inter_min)]
    layers += [CSABottleneck(planes * 4, planes, False, inter_min) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DepthwiseMixer(nn.Module):
    """The bottleneck mixer: ``x = pointwise(depthwise(x) + x)``, ``depth`` times with the same weights."""

    def __init__(self, channels: int, depth: int = 12, kernel_size: int = 7) -> None:
        super().__init__()
        self.depth = depth
        self.depthwise = nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels),
                                       nn.ReLU(inplace=True), nn.BatchNorm2d(channels))
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.depth):
            x = self.pointwise(self.depthwise(x) + x)
        return x


class DCSAUNet(nn.Module):
    """DCSAU-Net for binary segmentation: images (N, C, H, W) in [0, 1] -> logits (N, 1, H, W).

    Args:
        in_channels: image channels.
        base: stem width (paper: 64); level ``i`` has ``base * 2**i`` channels (``base`` divisible by 8).
        depth: down-sampling steps (paper: 4); H and W must be divisible by ``2 ** depth``.
        mixer_depth: repetitions of the bottleneck mixer (paper code: 12).
        blocks: CSA bottlenecks per stage (paper code: 2).
        inter_min: minimum width of the split-attention MLP (paper code: 32).
    """

    def __init__(self, in_channels: int = 3, base: int = 64, depth: int = 4, mixer_depth: int = 12,
                 blocks: int = 2, inter_min: int = 32) -> None:
        super().__init__()
        if depth < 1 or base % 8:
            raise ValueError(f"depth must be >= 1 and base a multiple of 8, got depth={depth}, base={base}")
        self.depth = depth
        widths = [base * 2 ** i for i in range(depth)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base, 3, padding=1), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.Conv2d(base, base, 3, padding=1), nn.BatchNorm2d(base), nn.ReLU(inplace=True))
        # The first encoder stage has no average pool (``is_first=False`` in the authors' layer1).
        self.encoders = nn.ModuleList([csa_stage(widths[i - 1], widths[i], blocks, avg_pool=i > 1, inter_min=inter_min)
                                       for i in range(1, depth)])
        self.mixer = DepthwiseMixer(widths[-1], mixer_depth)
        # Decoder level i takes the deeper level's output (widths[i + 1], or the mixer's widths[-1]) plus the skip.
        deeper = [widths[i + 1] if i + 1 < depth else widths[-1] for i in range(depth)]
        self.decoders = nn.ModuleList([csa_stage(deeper[i] + widths[i], widths[i], blocks, avg_pool=i > 0,
                                                 inter_min=inter_min) for i in reversed(range(depth))])
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by 2**depth={2 ** self.depth}")
        skips = [self.stem(x)]
        for enc in self.encoders:
            skips.append(enc(F.max_pool2d(skips[-1], 2)))
        y = self.mixer(F.max_pool2d(skips[-1], 2))
        for dec in self.decoders:
            skip = skips.pop()
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
            y = dec(torch.cat([skip, y], dim=1))
        return self.head(y)


def dcsau_net(in_channels: int = 3, base: int = 64, depth: int = 4) -> DCSAUNet:
    """DCSAU-Net with the paper's mixer depth (12) and two CSA blocks per stage; ``base`` is rounded up to a multiple of 8
    (the last decoder stage has ``base / 4`` bottleneck channels, split in two by the radix-2 attention)."""
    return DCSAUNet(in_channels, base=max(8, -(-base // 8) * 8), depth=depth)

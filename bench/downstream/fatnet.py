"""FAT-Net (Wu et al. 2022, "FAT-Net: Feature adaptive transformers for automated skin lesion segmentation", Medical
Image Analysis 76), the third segmenter of thesis chapter 5 (Tables 5.3-5.5). Written from the paper, with the
module layout of the authors' released model file (``FAT_Net.py``) read as a guide, not copied:

* CNN branch: a ResNet-34 without its max-pool (stem 7x7 conv stride 2, then four stages of basic blocks, 3/4/6/3,
  the first at stride 1), widths ``base * (1, 2, 4, 8)`` (``base = 64``: 64/128/256/512); level ``i`` is at
  ``H / 2**(i + 1)``; torchvision's ``BasicBlock``;
* transformer branch: non-overlapping ``2**depth`` patches embedded to ``tf_dim`` channels (DeiT-tiny: 192) and
  ``tf_layers`` (12) pre-norm ViT blocks (timm's ``Block``, ``tf_heads`` = 3, MLP ratio 4; no class token and, as in
  the released forward pass, no position embedding), reshaped to the deepest CNN grid and mapped to its width;
* fusion: the two deepest maps concatenated, squeeze-and-excitation (reduction 16), a 1x1 conv back to the width;
* feature adaptation modules (FAM) on the skips: one block (3x3 conv-ReLU + 1x1 conv-ReLU, summed) applied with
  shared weights ``2 * (depth - 1 - i)`` times to skip ``i`` (6 / 4 / 2 times at ``depth = 4``);
* memory-efficient decoder: LinkNet bottlenecks (1x1 to a quarter width, 3x3 transposed conv x2, 1x1), each added
  to its adapted skip; a head of a 4x4 transposed conv x2 to ``base / 2`` channels, two 3x3 convs, the logit map.

Left out: the ImageNet weights of the ResNet-34 and DeiT-tiny branches (random initialisation, as every bench
segmenter; the thesis does not say whether it kept them). Chapter 5 trains it like the other segmenters.
"""
from __future__ import annotations

import torch
from torch import nn


class FAMBlock(nn.Module):
    """Feature adaptation: ``relu(conv3x3(x)) + relu(conv1x1(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.wide = nn.Conv2d(channels, channels, 3, padding=1)
        self.point = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.wide(x)) + torch.relu(self.point(x))


class LinkNetUp(nn.Module):
    """1x1 conv to ``cin / 4``, a stride-2 3x3 transposed conv, 1x1 conv to ``cout`` (each BN + ReLU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(cin // 4, 1)
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.gate = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


def _res_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    from torchvision.models.resnet import BasicBlock

    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    layers = [BasicBlock(cin, cout, stride=stride, downsample=down)]
    layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FATNet(nn.Module):
    """FAT-Net for binary segmentation: images (N, C, H, W) in [0, 1] -> logits (N, 1, H, W).

    Args:
        in_channels: image channels.
        base: width of the first CNN level (paper: 64); level ``i`` has ``base * 2**i`` channels.
        depth: CNN levels = down-sampling steps (paper: 4); H and W must be divisible by ``2 ** depth``.
        tf_dim, tf_layers, tf_heads: the transformer branch (paper: DeiT-tiny, 192 / 12 / 3).
        blocks: basic blocks per CNN level (ResNet-34: 3, 4, 6, 3; cut or padded with its last value to ``depth``).
    """

    def __init__(self, in_channels: int = 3, base: int = 64, depth: int = 4, tf_dim: int = 192, tf_layers: int = 12,
                 tf_heads: int = 3, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if depth < 2:
            raise ValueError(f"FAT-Net needs depth >= 2, got {depth}")
        if tf_dim % tf_heads:
            raise ValueError(f"tf_dim={tf_dim} must be divisible by tf_heads={tf_heads}")
        self.depth = depth
        widths = [base * 2 ** i for i in range(depth)]
        counts = [blocks[min(i, len(blocks) - 1)] for i in range(depth)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(base), nn.ReLU(inplace=True))
        self.encoders = nn.ModuleList([_res_stage(widths[max(i - 1, 0)], widths[i], counts[i], 1 if i == 0 else 2)
                                       for i in range(depth)])
        patch = 2 ** depth
        self.patch_embed = nn.Conv2d(in_channels, tf_dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[Block(tf_dim, tf_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(tf_layers)])
        self.tf_to_cnn = nn.Conv2d(tf_dim, widths[-1], 1)
        self.se = SqueezeExcite(2 * widths[-1])
        self.fuse = nn.Conv2d(2 * widths[-1], widths[-1], 1)
        self.fams = nn.ModuleList([FAMBlock(widths[i]) for i in range(depth - 1)])
        self.fam_repeats = [2 * (depth - 1 - i) for i in range(depth - 1)]
        self.decoders = nn.ModuleList([LinkNetUp(widths[i + 1], widths[i]) for i in range(depth - 1)])
        head = max(base // 2, 4)
        self.head = nn.Sequential(nn.ConvTranspose2d(base, head, 4, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(head, head, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(head, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h % 2 ** self.depth or w % 2 ** self.depth:
            raise ValueError(f"input size {(h, w)} is not divisible by 2**depth={2 ** self.depth}")
        skips, y = [], self.stem(x)
        for enc in self.encoders:
            y = enc(y)
            skips.append(y)
        tokens = self.patch_embed(x)  # (N, D, h', w') on the deepest grid
        grid = tokens.shape[-2:]
        tokens = self.blocks(tokens.flatten(2).transpose(1, 2))
        tf = self.tf_to_cnn(tokens.transpose(1, 2).reshape(n, -1, *grid))
        y = self.fuse(self.se(torch.cat([skips[-1], tf], dim=1)))
        for i in reversed(range(self.depth - 1)):
            skip = skips[i]
            for _ in range(self.fam_repeats[i]):
                skip = self.fams[i](skip)
            y = self.decoders[i](y) + skip
        return self.head(y)


def fat_net(in_channels: int = 3, base: int = 64, depth: int = 4) -> FATNet:
    """FAT-Net with the paper's branches at ``base = 64, depth = 4`` (ResNet-34 widths, DeiT-tiny); smaller ``base``
    scales the transformer width with it (``3 * base``, 3 heads) and keeps 12 layers only at the paper width."""
    if base >= 64:
        return FATNet(in_channels, base=base, depth=depth)
    dim = max(3 * base, 12)
    return FATNet(in_channels, base=base, depth=depth, tf_dim=dim - dim % 3, tf_layers=2, tf_heads=3)

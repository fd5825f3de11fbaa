"""Pix2PixHD objectives (Wang et al. 2018, section 3.2 eq. 4-5 and the VGG term):

* LSGAN adversarial loss (Mao et al. 2017): mean squared distance of every patch score to 1 (real) or 0 (fake),
  summed over the discriminator scales.
* Discriminator feature matching: sum over scales k and layers i of the mean absolute difference between
  D_k's i-th layer features of the real pair and of the generated pair (the last, score layer excluded),
  real features detached.
* VGG19 perceptual loss: sum over relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of w_i * mean |F_i(x) - F_i(G(s))|;
  ImageNet weights from a local torchvision file (nothing is downloaded).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: torchvision's VGG19 ImageNet checkpoint (``VGG19_Weights.IMAGENET1K_V1``), expected under the weights dir.
VGG19_FILE = "vgg19-dcbbe1e0.pth"  # = bench.downstream.classifiers.TORCHVISION_FILES["vgg19"]
#: Indices in torchvision's ``vgg19().features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_TAPS = (1, 6, 11, 20, 29)
#: Layout of torchvision's ``vgg19().features`` up to relu5_1: "C" = conv3x3 + ReLU (two indices), "M" = max pool.
_VGG19_LAYOUT = "CC M CC M CCCC M CCCC M C".replace(" ", "")


def lsgan_loss(outputs: Sequence[Sequence[torch.Tensor]], target_real: bool) -> torch.Tensor:
    """sum_k mean((D_k(.) - t)^2), t = 1 for real and 0 for fake; ``outputs`` as `MultiscaleDiscriminator` returns."""
    target = 1.0 if target_real else 0.0
    return sum(F.mse_loss(feats[-1], torch.full_like(feats[-1], target)) for feats in outputs)


def feature_matching_loss(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """sum_k sum_i mean |D_k^(i)(s, G(s)) - D_k^(i)(s, x)| over the intermediate layers (eq. 4), real detached."""
    return sum(F.l1_loss(f, r.detach()) for fs, rs in zip(fake, real) for f, r in zip(fs[:-1], rs[:-1]))


def vgg19_file(weights_dir: str | Path | None, path: str | Path | None = None) -> Path:
    """The VGG19 ImageNet checkpoint (torchvision's file); raises `MissingWeightsError` (one line) if absent."""
    from bench.downstream.classifiers import imagenet_file

    return imagenet_file("vgg19", weights_dir, path)


def vgg19_trunk(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """torchvision's ``vgg19().features[:30]`` (up to relu5_1) loaded from a torchvision VGG19 state dict; the
    widths are read from the weights, so a smaller network saved in the same layout also loads."""
    layers: list[nn.Module] = []
    for kind in _VGG19_LAYOUT:
        if kind == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        key = f"features.{len(layers)}"
        if f"{key}.weight" not in state:
            raise KeyError(f"VGG19 state dict has no '{key}.weight' (expected torchvision's vgg19 layout)")
        weight = state[f"{key}.weight"]
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
        conv.load_state_dict({"weight": weight, "bias": state[f"{key}.bias"]})
        layers += [conv, nn.ReLU(inplace=False)]
    return nn.Sequential(*layers[:VGG19_TAPS[-1] + 1])


class VGGLoss(nn.Module):
    """Perceptual loss on a frozen VGG19; inputs are images in [0, 1] (ImageNet-normalised inside)."""

    def __init__(self, trunk: nn.Sequential, layer_weights: Sequence[float]) -> None:
        super().__init__()
        from bench.metrics.extractors import IMAGENET_MEAN, IMAGENET_STD

        if len(layer_weights) != len(VGG19_TAPS):
            raise ValueError(f"need {len(VGG19_TAPS)} VGG layer weights, got {len(layer_weights)}")
        self.trunk = trunk.eval().requires_grad_(False)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in VGG19_TAPS:
                out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(real)
        return sum(w * F.l1_loss(f, t) for w, f, t in zip(self.layer_weights, self.features(fake), target))


def load_vgg_loss(weights_dir: str | Path | None, path: str | Path | None,
                  layer_weights: Sequence[float]) -> VGGLoss:
    """`VGGLoss` on torchvision's VGG19 ImageNet weights from ``path`` or ``<weights_dir>/vgg19-dcbbe1e0.pth``."""
    from bench.metrics.extractors import load_state_dict

    file = vgg19_file(weights_dir, path)
    loss = VGGLoss(vgg19_trunk(load_state_dict(file)), layer_weights)
    logger.info("pix2pixhd: VGG19 perceptual loss weights from %s", file)
    return loss

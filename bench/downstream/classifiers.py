"""Image classifiers for the classification-augmentation task (thesis ch. 4 section 4.4.3, Tables 4.2-4.4) and the
skin-tone annotators (thesis ch. 5, Table 5.1).

The thesis fine-tunes torchvision's ImageNet-pretrained VGG16, ResNet18, DenseNet121 and ViT-B/16 with only the
last layer re-initialised for 7 classes; chapter 5 adds EfficientNet-V2 (torchvision's smallest, V2-S [A]) and
MobileNet-V2 for the 3 skin-tone groups. Two variants per id:

* ``paper``: the torchvision architecture, ImageNet weights read from a local file (torchvision's own file name,
  under the weights dir; nothing is downloaded), final layer replaced. ``pretrained=False`` gives random weights
  (used by the tests, which exercise the same loading code on a saved random state dict).
* ``mini``: the same family at a width and depth that trains in seconds on 64 px CPU images (random init).

Every classifier wraps its network in `Normalized`, so inputs are images (N, 3, H, W) in [0, 1] and the ImageNet
mean/std normalisation happens inside; outputs are logits (N, num_classes).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.registry import Registry

logger = logging.getLogger(__name__)

CLASSIFIERS: Registry = Registry("classifier")
CLASSIFIERS.register("vgg16", "bench.downstream.classifiers:vgg16")
CLASSIFIERS.register("resnet18", "bench.downstream.classifiers:resnet18")
CLASSIFIERS.register("densenet121", "bench.downstream.classifiers:densenet121")
CLASSIFIERS.register("vit-b16", "bench.downstream.classifiers:vit_b_16")
CLASSIFIERS.register("efficientnet-v2", "bench.downstream.classifiers:efficientnet_v2")
CLASSIFIERS.register("mobilenet-v2", "bench.downstream.classifiers:mobilenet_v2")

#: torchvision's ImageNet checkpoint file names (IMAGENET1K_V1), expected under the weights dir.
IMAGENET_FILES = {
    "vgg16": "vgg16-397923af.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "vit-b16": "vit_b_16-c867db91.pth",
    "efficientnet-v2": "efficientnet_v2_s-dd5fe13b.pth",
    "mobilenet-v2": "mobilenet_v2-b0353104.pth",
}
#: torchvision ImageNet files of every backbone the project loads: the classifiers and loss networks (VGG19 of
#: pix2pixHD's perceptual loss).
TORCHVISION_FILES = {**IMAGENET_FILES, "vgg19": "vgg19-dcbbe1e0.pth"}


class Normalized(nn.Module):
    """``net((x - mean) / std)`` with ImageNet statistics; ``x`` in [0, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        from bench.metrics.extractors import IMAGENET_MEAN, IMAGENET_STD

        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _fix_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's DenseNet checkpoints name layers ``norm.1``; the modules are ``norm1`` (torchvision does the same)."""
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def imagenet_file(name: str, weights_dir: str | Path | None, path: str | Path | None = None) -> Path:
    """The ImageNet checkpoint of backbone ``name`` (`TORCHVISION_FILES`); raises `MissingWeightsError` (one line)
    if absent."""
    from bench.metrics.extractors import MissingWeightsError, resolve_weights_dir

    file = Path(path) if path is not None else resolve_weights_dir(weights_dir) / TORCHVISION_FILES[name]
    if not file.exists():
        raise MissingWeightsError(f"missing ImageNet weights of {name}: put torchvision's {TORCHVISION_FILES[name]} at "
                                  f"{file}; nothing is downloaded")
    return file


def load_imagenet(model: nn.Module, name: str, weights_dir: str | Path | None, path: str | Path | None = None) -> None:
    """Load ImageNet weights for classifier ``name`` from ``path`` or ``<weights_dir>/<torchvision file name>``.

    Raises:
        MissingWeightsError: the file is absent (one line naming the file and where to put it).
    """
    from bench.metrics.extractors import load_state_dict

    file = imagenet_file(name, weights_dir, path)
    state = load_state_dict(file)
    if name == "densenet121":
        state = _fix_densenet_keys(state)
    model.load_state_dict(state)
    logger.info("loaded ImageNet weights of %s from %s", name, file)


def _paper_model(name: str, num_classes: int, pretrained: bool, weights_dir: str | Path | None,
                 weights_path: str | Path | None) -> nn.Module:
    import torchvision.models as tvm

    if pretrained:
        imagenet_file(name, weights_dir, weights_path)  # fail before building a large model
    build = {"vgg16": tvm.vgg16, "resnet18": tvm.resnet18, "densenet121": tvm.densenet121, "vit-b16": tvm.vit_b_16,
             "efficientnet-v2": tvm.efficientnet_v2_s, "mobilenet-v2": tvm.mobilenet_v2}[name]
    model = build(weights=None)
    if pretrained:
        load_imagenet(model, name, weights_dir, weights_path)
    # Re-initialise only the final layer, for num_classes outputs (thesis section 4.4.3).
    if name == "vgg16":
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_classes)
    elif name == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    elif name in ("efficientnet-v2", "mobilenet-v2"):
        model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
    else:
        model.heads.head = nn.Linear(model.heads.head.in_features, num_classes)
    return model


def _mini_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    import torchvision.models as tvm
    from torchvision.models.resnet import BasicBlock
    from torchvision.models.vgg import VGG, make_layers

    if name == "vgg16":
        # VGG16's five conv groups (2, 2, 3, 3, 3 convs) at 1/8 width, with a small classifier. Batch norm (VGG16-BN):
        # without it the random-init 13-layer stack often stays at the majority class for the first epochs at the
        # mini learning rate (measured on the skin-tone mini task: validation accuracy 0.66 = majority until early
        # stopping, 0.975 with it).
        cfg = [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64, "M"]
        model = VGG(make_layers(cfg, batch_norm=True), num_classes=num_classes, init_weights=True)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(64, num_classes))
        return model
    if name == "resnet18":
        return _SmallResNet(BasicBlock, (2, 2, 2, 2), widths=(8, 16, 32, 64), num_classes=num_classes)
    if name == "densenet121":
        return tvm.DenseNet(growth_rate=8, block_config=(2, 3, 4, 3), num_init_features=16, bn_size=2,
                            num_classes=num_classes)
    if name == "efficientnet-v2":
        # EfficientNet-V2-S's layout (fused-MBConv stages, then MBConv stages with squeeze-excitation) at 1/3 width
        # and one or two blocks per stage.
        from functools import partial

        from torchvision.models.efficientnet import FusedMBConvConfig, MBConvConfig

        stages = [FusedMBConvConfig(1, 3, 1, 8, 8, 1), FusedMBConvConfig(4, 3, 2, 8, 16, 2),
                  FusedMBConvConfig(4, 3, 2, 16, 24, 2), MBConvConfig(4, 3, 2, 24, 48, 2), MBConvConfig(6, 3, 1, 48, 64, 2)]
        return tvm.EfficientNet(stages, dropout=0.2, stochastic_depth_prob=0.1, num_classes=num_classes,
                                norm_layer=partial(nn.BatchNorm2d, eps=1e-3), last_channel=128)
    if name == "mobilenet-v2":
        # MobileNet-V2's inverted residuals (t, c, n, s) at width 0.25 and fewer repeats; the 1280-channel head stays.
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 2, 2], [6, 96, 1, 1]]
        return tvm.MobileNetV2(num_classes=num_classes, width_mult=0.25, inverted_residual_setting=setting)
    patch = 8 if image_size % 8 == 0 else 4
    return tvm.VisionTransformer(image_size=image_size, patch_size=patch, num_layers=3, num_heads=4, hidden_dim=64,
                                 mlp_dim=128, num_classes=num_classes)


class _SmallResNet(nn.Module):
    """ResNet18's layout (four stages of two torchvision ``BasicBlock``s) at a chosen width."""

    def __init__(self, block: Any, layers: tuple[int, ...], widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            blocks = [block(cin, w, stride, down)] + [block(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1))


def build_classifier(name: str, num_classes: int, variant: str = "paper", image_size: int = 224,
                     pretrained: bool = True, weights_dir: str | Path | None = None,
                     weights_path: str | Path | None = None) -> Normalized:
    """A classifier by id (``vgg16``, ``resnet18``, ``densenet121``, ``vit-b16``, ``efficientnet-v2``, ``mobilenet-v2``).

    Args:
        variant: ``paper`` (torchvision architecture; ImageNet weights when ``pretrained``) or ``mini``.
        image_size: input side (ViT-B/16 needs 224 in the paper variant).
        weights_dir: folder with torchvision's ImageNet files (else ``$BENCH_WEIGHTS``).
        weights_path: explicit checkpoint file (overrides ``weights_dir``).
    """
    if name not in IMAGENET_FILES:
        raise KeyError(CLASSIFIERS.unknown_message(name))
    if variant == "paper":
        if name == "vit-b16" and image_size != 224:
            raise ValueError(f"ViT-B/16 takes 224 px inputs, got image_size={image_size}")
        net = _paper_model(name, num_classes, pretrained, weights_dir, weights_path)
    elif variant == "mini":
        net = _mini_model(name, num_classes, image_size)
    else:
        raise ValueError(f"classifier variant must be 'paper' or 'mini', got '{variant}'")
    return Normalized(net)


def vgg16(**kwargs: Any) -> Normalized:
    return build_classifier("vgg16", **kwargs)


def resnet18(**kwargs: Any) -> Normalized:
    return build_classifier("resnet18", **kwargs)


def densenet121(**kwargs: Any) -> Normalized:
    return build_classifier("densenet121", **kwargs)


def vit_b_16(**kwargs: Any) -> Normalized:
    return build_classifier("vit-b16", **kwargs)


def efficientnet_v2(**kwargs: Any) -> Normalized:
    return build_classifier("efficientnet-v2", **kwargs)


def mobilenet_v2(**kwargs: Any) -> Normalized:
    return build_classifier("mobilenet-v2", **kwargs)

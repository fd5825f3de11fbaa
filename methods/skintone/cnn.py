"""The base CNNs of Table 5.1 (ResNet-18, VGG-16, DenseNet-121, EfficientNet-V2, MobileNet-V2, ViT-B-16).

Each is a torchvision classifier (`bench.downstream.classifiers`; ImageNet weights from a local file in the paper
profile, small random-init variants in mini) with a 3-way head, fine-tuned on the fit set's ``train`` part with
SGD and early stopping on the ``val`` part's accuracy (`bench.downstream.cls_trainer`). A trained base model is
cached in ``ctx.cache_dir`` under a key of its architecture, its training options, the fit data's pixels and
labels and the seed, so the standalone annotator and every ensemble that stacks it share one training.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.data.skintone import SKIN_GROUPS
from bench.interface import RunContext, derive_seed
from bench.store import atomic_write_text, stable_hash
from methods.skintone.common import ARCHITECTURES, Annotator, FitData, SkinToneConfig, prepare_fit_data, stack_images

logger = logging.getLogger(__name__)

MEMBER_VERSION = 1
"""Bump when base-model training changes: it is part of the cache key."""
TRAINING_FIELDS = ("variant", "pretrained", "input_size", "lr", "momentum", "weight_decay", "batch_size", "max_epochs",
                   "patience", "flips")
"""The options that determine a trained base model (with the data and the seed)."""


@dataclass
class BaseModel:
    """A trained base CNN and where its weights are."""

    arch: str
    model: torch.nn.Module
    info: dict[str, Any]
    folder: Path


def _build(arch: str, config: SkinToneConfig, pretrained: bool) -> torch.nn.Module:
    from bench.downstream.classifiers import build_classifier

    return build_classifier(arch, len(SKIN_GROUPS), config.variant, config.input_size, pretrained, config.weights_dir)


def member_key(arch: str, config: SkinToneConfig, data_key: str, seed: int) -> str:
    """Cache key of a trained base model: architecture (with its parameter names and shapes, so a changed network
    definition is a new key), training options, ImageNet file, fit data and seed."""
    weights = None
    if config.pretrained and config.variant == "paper":
        from bench.downstream.classifiers import IMAGENET_FILES

        weights = IMAGENET_FILES[arch]
    layout = [(k, list(v.shape)) for k, v in _build(arch, config, pretrained=False).state_dict().items()]
    return stable_hash({"arch": arch, "version": MEMBER_VERSION, "layout": layout, "weights": weights,
                        "training": {k: getattr(config, k) for k in TRAINING_FIELDS}, "data": data_key, "seed": seed}, 16)


def load_base_model(arch: str, config: SkinToneConfig, folder: Path) -> BaseModel:
    from safetensors.torch import load_file

    model = _build(arch, config, pretrained=False)  # architecture only: the fitted weights follow
    model.net.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return BaseModel(arch, model, json.loads((folder / "info.json").read_text()), folder)


def fit_base_model(arch: str, data: FitData, config: SkinToneConfig, ctx: RunContext) -> BaseModel:
    """Train base CNN ``arch`` on ``data`` (or read it from the cache) and return it in eval mode on the CPU."""
    from safetensors.torch import save_file

    from bench.downstream.cls_trainer import ClsTrainConfig, train_classifier

    key = member_key(arch, config, data.key, ctx.seed)
    folder = Path(ctx.cache_dir or ctx.work_dir) / "skintone-models" / f"{arch}-{key}"
    if (folder / "done.json").exists():
        logger.info("skin-tone base model %s: cached (%s)", arch, folder.name)
        return load_base_model(arch, config, folder)
    salt = ARCHITECTURES.index(arch)
    torch.manual_seed(derive_seed(ctx.seed, 500 + salt))
    model = _build(arch, config, config.pretrained).to(ctx.device)
    tc = ClsTrainConfig(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                        batch_size=config.batch_size, max_epochs=config.max_epochs, patience=config.patience,
                        flips=config.flips)
    dev = ctx.device
    result = train_classifier(model, data.train_x.to(dev), data.train_y.to(dev), data.val_x.to(dev), data.val_y.to(dev),
                              tc, seed=derive_seed(ctx.seed, 600 + salt), advance=ctx.progress(f"fit {arch}", config.max_epochs))
    model = result.model.cpu().eval()
    info = {"arch": arch, "key": key, "best_epoch": result.best_epoch, "epochs": result.epochs_run,
            "best_val_accuracy": result.best_val_accuracy, "n_train": len(data.train_y), "n_val": len(data.val_y),
            "split_source": data.split_source, "history": result.history}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.tmp.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    atomic_write_text(folder / "info.json", json.dumps(info))
    atomic_write_text(folder / "done.json", json.dumps({"key": key}))
    logger.info("skin-tone base model %s: best val accuracy %.4f at epoch %d of %d", arch, result.best_val_accuracy,
                result.best_epoch, result.epochs_run)
    return BaseModel(arch, model, info, folder)


def save_base_model(member: BaseModel, path: Path) -> None:
    """Put the member's files in ``path`` (a hard link to the cached weights where possible, else a copy)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "info.json"):
        dst = path / name
        if dst.exists():
            dst.unlink()
        try:
            os.link(member.folder / name, dst)
        except OSError:
            shutil.copyfile(member.folder / name, dst)


@torch.no_grad()
def member_outputs(member: BaseModel, images: torch.Tensor, size: int, batch_size: int = 64) -> torch.Tensor:
    """Logits (N, 3) of a base model for float images (N, 3, H, W) in [0, 1], resized to its input size."""
    from bench.downstream.cls_trainer import predict_logits

    if images.shape[-1] != size or images.shape[-2] != size:
        images = stack_images(list(images), size)
    return predict_logits(member.model, images, batch_size)


class BaseCNN(Annotator):
    """A fine-tuned torchvision CNN; ``arch`` names the classifier (see `bench.downstream.classifiers`)."""

    arch: ClassVar[str] = ""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.member: BaseModel | None = None

    def fit(self, train: Any, ctx: RunContext) -> None:
        data = prepare_fit_data(train, self.config.input_size, self.config.val_fraction, derive_seed(ctx.seed, 13))
        self.member = fit_base_model(self.arch, data, self.config, ctx)

    def save(self, path: Path) -> None:
        save_base_model(self._fitted(), path)

    def load(self, path: Path) -> None:
        self.member = load_base_model(self.arch, self.config, path)

    def _fitted(self) -> BaseModel:
        if self.member is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return self.member

    def annotate(self, images: torch.Tensor, ctx: RunContext) -> list[dict[str, Any]]:
        probs = member_outputs(self._fitted(), images, self.config.input_size).softmax(1)
        return [{"label": int(p.argmax()), "probabilities": [round(float(v), 6) for v in p]} for p in probs]


class ResNet18(BaseCNN):
    """ResNet-18 fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "resnet18"


class VGG16(BaseCNN):
    """VGG-16 fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "vgg16"


class DenseNet121(BaseCNN):
    """DenseNet-121 fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "densenet121"


class EfficientNetV2(BaseCNN):
    """EfficientNet-V2 (torchvision's V2-S) fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "efficientnet-v2"


class MobileNetV2(BaseCNN):
    """MobileNet-V2 fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "mobilenet-v2"


class ViTB16(BaseCNN):
    """ViT-B/16 fine-tuned on the skin-tone groups (Table 5.1)."""

    arch = "vit-b16"

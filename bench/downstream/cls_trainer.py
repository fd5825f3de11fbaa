"""Classifier training for the classification-augmentation task: SGD, cross-entropy, early stopping.

Thesis chapter 4 section 4.4.3: batch 128, SGD lr 1e-3 momentum 0.9, early stopping with patience 10 on
validation accuracy. Loss, epoch cap, weight decay and augmentation are unstated; they are options here
(cross-entropy, 100 epochs, no weight decay, optional flips), and the best-validation-accuracy epoch is kept.
"""
from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from bench.downstream.loop import random_flips, train_with_early_stopping

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClsTrainConfig:
    """Hyperparameters of classifier training."""

    lr: float = 1e-3
    """SGD learning rate (thesis)."""
    momentum: float = 0.9
    """SGD momentum (thesis)."""
    weight_decay: float = 0.0
    """SGD weight decay (not stated in the thesis)."""
    batch_size: int = 128
    """Batch size (thesis)."""
    max_epochs: int = 100
    """Epoch cap (not stated; 100 as the spec recommends)."""
    patience: int = 10
    """Epochs without a validation-accuracy improvement before stopping (thesis)."""
    flips: bool = False
    """Random horizontal and vertical flips while training (not stated)."""


@dataclass
class ClsTrainResult:
    model: nn.Module
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float in [0, 1]; float images pass through (tasks store large sets as uint8)."""
    return images.float() / 255 if images.dtype == torch.uint8 else images


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Logits (N, K) for images (N, 3, H, W), float in [0, 1] or uint8, in eval mode."""
    model.eval()
    out = [model(as_float(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, 0))


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor,
                     val_labels: torch.Tensor, config: ClsTrainConfig, seed: int,
                     advance: Callable[..., None] | None = None, checkpoint: Path | None = None) -> ClsTrainResult:
    """Train ``model`` and return it at its best validation-accuracy epoch (earliest on ties).

    Args:
        images: (N, 3, H, W) float in [0, 1] or uint8; labels: (N,) int64 class indices.
        val_images, val_labels: the validation split, same layout.
        seed: seeds shuffling and flips (initialisation is the caller's).
        advance: progress callback, called once per epoch.
        checkpoint: per-epoch state file; an interrupted training resumes from it (see ``train_with_early_stopping``).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    labels = labels.long()

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = as_float(images[idx])
        if config.flips:
            (x,) = random_flips(x, generator=gen)
        return F.cross_entropy(model(x), labels[idx])

    def val_accuracy() -> float:
        return float((predict_logits(model, val_images).argmax(1) == val_labels).float().mean())

    run = train_with_early_stopping(model, len(images), config.batch_size, config.max_epochs, config.patience,
                                    gen, step, opt, val_accuracy, advance, checkpoint)
    history = [{"epoch": h["epoch"], "loss": h["loss"], "val_accuracy": h["score"]} for h in run.history]
    logger.debug("trained %d epochs, best val accuracy %.4f at epoch %d", run.epochs_run, run.best_score, run.best_epoch)
    return ClsTrainResult(model, run.best_epoch, run.best_score, run.epochs_run, history)

"""One trainer for every downstream segmenter: Adam, BCE + Dice loss, early stopping on validation Dice.

The thesis (chapter 4, section 4.4.4) trains segmenters with Adam, lr 1e-3,
batch 16 and early stopping with patience 20 on validation accuracy; loss, input
size and epoch cap are unstated, so they are options here (BCE + soft Dice,
validation Dice as the stopping criterion, documented defaults).
"""
from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bench.downstream.loop import random_flips, train_with_early_stopping
from bench.metrics.segmentation import dice_iou

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegTrainConfig:
    """Hyperparameters of segmenter training."""

    lr: float = 1e-3
    """Adam learning rate (thesis 4.4.4)."""
    batch_size: int = 16
    """Batch size (thesis 4.4.4)."""
    max_epochs: int = 200
    """Epoch cap (not stated in the thesis)."""
    patience: int = 20
    """Epochs without validation-Dice improvement before stopping (thesis 4.4.4)."""
    loss: str = "bce+dice"
    """``bce``, ``dice`` or ``bce+dice`` (not stated in the thesis); ``focal+dice`` (MedDiff-FT) or ``dice+ce``
    (DiffBoost) through MONAI."""
    hflip: bool = False
    """Random horizontal/vertical flips during training (not stated in the thesis)."""
    threshold: float = 0.5
    """Sigmoid threshold for binary predictions."""
    optimizer: str = "adam"
    """``adam`` (thesis 4.4.4) or ``adamw`` (DiffBoost B.9: ``AdamW(lr)`` with torch's default weight decay 0.01)."""


@dataclass
class TrainResult:
    model: nn.Module
    best_epoch: int
    best_val_dice: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Segmentation loss on logits (N,1,H,W) and float targets (N,1,H,W)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if kind == "bce":
        return bce
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    soft_dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    if kind == "dice":
        return soft_dice.mean()
    if kind == "bce+dice":
        return bce + soft_dice.mean()
    if kind in MONAI_LOSSES:  # MedDiff-FT's focal + Dice (A.9), DiffBoost's DiceCE (B.9): MONAI's implementations
        return monai_loss(kind)(logits, target)
    raise ValueError(f"unknown loss '{kind}'; valid: bce, dice, bce+dice, {', '.join(MONAI_LOSSES)}")


#: Losses computed by MONAI on one sigmoid channel: ``focal+dice`` = ``DiceFocalLoss`` (per-image soft Dice + focal
#: loss, gamma 2, equal weights; MedDiff-FT A.9 names "focal loss + dice loss" without weights), ``dice+ce`` =
#: ``DiceCELoss`` (DiffBoost B.9; the code's two-class softmax is the same model as one sigmoid logit).
MONAI_LOSSES = ("focal+dice", "dice+ce")


def monai_loss(kind: str) -> nn.Module:
    """The MONAI loss module of ``kind`` (one of `MONAI_LOSSES`), on logits (N, 1, H, W) and float targets."""
    from monai.losses import DiceCELoss, DiceFocalLoss

    if kind == "focal+dice":
        return DiceFocalLoss(sigmoid=True, gamma=2.0)
    if kind == "dice+ce":
        return DiceCELoss(sigmoid=True)
    raise ValueError(f"unknown MONAI loss '{kind}'; valid: {', '.join(MONAI_LOSSES)}")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, threshold: float = 0.5) -> torch.Tensor:
    """Binary masks (N, H, W) for images (N, C, H, W) in [0, 1]."""
    model.eval()
    out = [torch.sigmoid(model(images[i:i + batch_size]))[:, 0] > threshold for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, *images.shape[-2:]), dtype=torch.bool)


def train_segmenter(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, val_images: torch.Tensor,
                    val_masks: torch.Tensor, config: SegTrainConfig, seed: int,
                    advance: Callable[..., None] | None = None, checkpoint: Path | None = None,
                    hook: Any = None) -> TrainResult:
    """Train ``model`` and return it at its best validation-Dice epoch.

    Args:
        images: (N, C, H, W) float in [0, 1]; masks: (N, H, W) bool.
        val_images, val_masks: the validation split, same layout.
        seed: seeds initialisation-independent randomness (shuffling, flips).
        advance: progress callback, called once per epoch.
        checkpoint: per-epoch state file; an interrupted training resumes from it (see ``train_with_early_stopping``).
        hook: a `bench.downstream.hooks` hook (e.g. `PatchMerge`) computing each mini-batch's loss; None: plain.
    """
    gen = torch.Generator().manual_seed(seed)
    if config.optimizer not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer '{config.optimizer}'; valid: adam, adamw")
    opt = (torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam)(model.parameters(), lr=config.lr)
    target = masks.float().unsqueeze(1)

    def step(idx: torch.Tensor) -> torch.Tensor:
        if hook is not None:
            return hook.loss(model, idx, images, target, lambda logits, y: seg_loss(logits, y, config.loss), gen,
                             config.hflip)
        x, y = images[idx], target[idx]
        if config.hflip:
            x, y = random_flips(x, y, generator=gen)
        loss = seg_loss(model(x), y, config.loss)
        auxiliary = getattr(model, "auxiliary_loss", None)  # e.g. XBound-Former's boundary supervision
        return loss + auxiliary(y) if callable(auxiliary) else loss

    def val_dice() -> float:
        return float(dice_iou(predict(model, val_images, threshold=config.threshold), val_masks)[0].mean())

    run = train_with_early_stopping(model, len(images), config.batch_size, config.max_epochs, config.patience,
                                    gen, step, opt, val_dice, advance, checkpoint)
    history = [{"epoch": h["epoch"], "loss": h["loss"], "val_dice": h["score"]} for h in run.history]
    logger.debug("trained %d epochs, best val dice %.4f at epoch %d", run.epochs_run, run.best_score, run.best_epoch)
    return TrainResult(model, run.best_epoch, run.best_score, run.epochs_run, history)

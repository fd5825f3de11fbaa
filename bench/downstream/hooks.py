"""Training-loop hooks of the segmentation trainer: how a mini-batch becomes a loss when synthetic data is not simply
appended to the real set.

A generator declares the hook in the ``meta["train_hook"]`` of every sample it returns (a JSON dict, stored with the
shard); `augmented_arm` reads it and builds the augmented arm's training set and hook. Without a declaration the arm is
real + synthetic pairs concatenated, as before.

``patch-merge`` is DiffBoost's random patch merging (B.7): the arm trains over the *real* images (the epoch length of
the real-only arm: the number of optimiser steps is unchanged), and each real image x_0 of a mini-batch is merged with
one of its synthetic re-renderings x_i (chosen uniformly per access) through a fresh random patch mask
m = 1[U < alpha], U ~ Uniform(0, 1) on a (H/p, W/p) grid, nearest-upsampled:

* ``mode="input"`` (paper, Algorithm 1): loss(C(m x_0 + (1 - m) x_i), m y_0 + (1 - m) y_i);
* ``mode="logit"`` (released code, ``aug_training_step``): loss(m C(x_0) + (1 - m) C(x_i), m y_0 + (1 - m) y_i).

DiffBoost reuses the real mask (y_i = y_0), so the target is y_0; the general form is kept for other generators.
Real images without a synthetic partner train unmerged. Flips (``hflip``) are drawn once per mini-batch and applied
to both members of a pair, so masks stay aligned with images.

``augment`` is an online classical augmentation (DiffBoost's Table II arms, `bench.downstream.augment`): the arm trains
over the real images, each mini-batch transformed per sample (``meta["train_hook"] = {kind: augment, transforms:
[...], renorm: minmax}``, declared by ``classic-aug`` with ``online`` transforms); the samples carrying the
declaration are not trained on.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bench.downstream.loop import random_flips

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Hook kinds a generator may declare in ``meta["train_hook"]["kind"]``.
HOOK_KINDS = ("patch-merge", "augment")


def patch_mask(n: int, height: int, width: int, alpha: float, patch: int, generator: torch.Generator) -> torch.Tensor:
    """Random binary patch masks (n, 1, H, W) float: 1 (real) with probability ``alpha`` per ``patch`` x ``patch``
    cell, nearest-upsampled (B.7). ``patch`` must divide H and W (paper: 64 at 384, a 6 x 6 grid)."""
    if height % patch or width % patch:
        raise ValueError(f"patch size {patch} does not divide the image size {height}x{width}")
    u = torch.rand(n, 1, height // patch, width // patch, generator=generator)
    return F.interpolate((u < alpha).float(), size=(height, width), mode="nearest")


@dataclass
class PatchMerge:
    """DiffBoost's random patch merging of real images with their synthetic partners.

    Attributes:
        syn_images: (M, C, H, W) synthetic images; syn_masks: (M, 1, H, W) float masks.
        partners: per real image, the indices of its synthetic partners in ``syn_images`` (may be empty).
        alpha: probability of a real patch (code: 0.6).
        patch_fraction: patch side as a fraction of the image side (code: 64 / 384 = 1/6).
        mode: ``input`` (paper) or ``logit`` (code).
    """

    syn_images: torch.Tensor
    syn_masks: torch.Tensor
    partners: list[list[int]]
    alpha: float = 0.6
    patch_fraction: float = 1 / 6
    mode: str = "input"
    merged: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("input", "logit"):
            raise ValueError(f"patch-merge mode must be 'input' or 'logit', got '{self.mode}'")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"patch-merge alpha must be in [0, 1], got {self.alpha}")

    def patch_size(self, side: int) -> int:
        """The patch side at image side ``side``: the largest divisor of ``side`` not above ``fraction * side``."""
        target = max(1, int(round(self.patch_fraction * side)))
        return max(d for d in range(1, target + 1) if side % d == 0)

    def merge(self, idx: torch.Tensor, images: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
              hflip: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mini-batch's real images and targets, their partners and the patch masks (partnerless rows get m = 1).

        Returns: ``(x_real, y_real, x_syn, y_syn, m)``, all (B, ., H, W), flipped alike when ``hflip``.
        """
        x_real, y_real = images[idx], target[idx]
        pick = []
        for j in idx.tolist():
            options = self.partners[j]
            pick.append(options[int(torch.randint(len(options), (1,), generator=generator))] if options else -1)
        has = torch.tensor([p >= 0 for p in pick])
        safe = torch.tensor([max(p, 0) for p in pick])
        x_syn = torch.where(has[:, None, None, None], self.syn_images[safe], x_real) if len(self.syn_images) else x_real
        y_syn = torch.where(has[:, None, None, None], self.syn_masks[safe], y_real) if len(self.syn_masks) else y_real
        h, w = x_real.shape[-2:]
        m = patch_mask(len(idx), h, w, self.alpha, self.patch_size(min(h, w)), generator)
        m = torch.where(has[:, None, None, None], m, torch.ones_like(m))
        if hflip:
            x_real, y_real, x_syn, y_syn, m = random_flips(x_real, y_real, x_syn, y_syn, m, generator=generator)
        self.merged += int(has.sum())
        return x_real, y_real, x_syn, y_syn, m

    def loss(self, model: nn.Module, idx: torch.Tensor, images: torch.Tensor, target: torch.Tensor, loss_fn: LossFn,
             generator: torch.Generator, hflip: bool = False) -> torch.Tensor:
        """The mini-batch loss with merged inputs (``input``) or merged logits (``logit``)."""
        x_real, y_real, x_syn, y_syn, m = self.merge(idx, images, target, generator, hflip)
        y = m * y_real + (1 - m) * y_syn
        if self.mode == "input":
            return loss_fn(model(m * x_real + (1 - m) * x_syn), y)
        logits = model(torch.cat([x_real, x_syn]))
        return loss_fn(m * logits[:len(idx)] + (1 - m) * logits[len(idx):], y)


@dataclass
class Augment:
    """Online classical augmentation of the real mini-batches (`bench.downstream.augment.OnlineAugment`)."""

    transform: Any

    def loss(self, model: nn.Module, idx: torch.Tensor, images: torch.Tensor, target: torch.Tensor, loss_fn: LossFn,
             generator: torch.Generator, hflip: bool = False) -> torch.Tensor:
        x, y = self.transform(images[idx], target[idx], generator)
        if hflip:
            x, y = random_flips(x, y, generator=generator)
        return loss_fn(model(x), y)


def declared_hook(synthetic: Sequence[Any]) -> dict[str, Any] | None:
    """The ``train_hook`` the generated samples declare (all alike), or None."""
    specs = [s.meta.get("train_hook") for s in synthetic]
    if not specs or all(spec is None for spec in specs):
        return None
    first = specs[0]
    if any(spec != first for spec in specs) or not isinstance(first, dict):
        raise ValueError("generated samples declare different (or malformed) meta['train_hook'] values")
    if first.get("kind") not in HOOK_KINDS:
        raise ValueError(f"unknown train hook '{first.get('kind')}'; valid: {', '.join(HOOK_KINDS)}")
    return first


def augmented_arm(real: tuple[torch.Tensor, torch.Tensor], syn: tuple[torch.Tensor, torch.Tensor],
                  real_ids: Sequence[Any], synthetic: Sequence[Any]
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], PatchMerge | Augment | None]:
    """Training pairs and hook of the augmented arm.

    Args:
        real: real (images (N, C, H, W), masks (N, H, W) bool); syn: the synthetic ones, same layout.
        real_ids: ``meta["id"]`` of each real pair (a synthetic sample's ``meta["source_id"]`` names its partner).
        synthetic: the generated `Sample`s (their meta declares the hook).

    Returns:
        ``((images, masks), hook)``: real + synthetic concatenated and None without a declaration; the real pairs and
        a `PatchMerge` with ``patch-merge``; the real pairs and an `Augment` with ``augment``.
    """
    spec = declared_hook(synthetic)
    if spec is None or not len(syn[0]):
        return (torch.cat([real[0], syn[0]]), torch.cat([real[1], syn[1]])), None
    if spec["kind"] == "augment":
        from bench.downstream.augment import OnlineAugment

        transform = OnlineAugment(list(spec.get("transforms") or ()), int(real[0].shape[-1]),
                                  str(spec.get("renorm", "minmax")))
        logger.info("online augmentation %s (renorm %s) over %d real images", "+".join(transform.names),
                    transform.renorm, len(real[0]))
        return real, Augment(transform)
    position = {str(rid): j for j, rid in enumerate(real_ids)}
    partners: list[list[int]] = [[] for _ in real_ids]
    unmatched = 0
    for i, s in enumerate(synthetic):
        j = position.get(str(s.meta.get("source_id")))
        if j is None:
            unmatched += 1
        else:
            partners[j].append(i)
    if unmatched == len(synthetic):
        raise ValueError("patch-merge: no generated sample names a real training image in meta['source_id']")
    if unmatched:
        logger.warning("patch-merge: %d generated samples name no real image of this arm and are not used (the "
                       "generator saw images outside the real subset: set task.fit_on=real-subset)", unmatched)
    hook = PatchMerge(syn[0], syn[1].float()[:, None], partners, alpha=float(spec.get("alpha", 0.6)),
                      patch_fraction=float(spec.get("patch_fraction", 1 / 6)), mode=str(spec.get("mode", "input")))
    logger.info("patch-merge (%s, alpha %g, patch %.3g of the side): %d of %d real images have synthetic partners",
                hook.mode, hook.alpha, hook.patch_fraction, sum(1 for p in partners if p), len(partners))
    return real, hook

"""What every skin-tone annotator shares: the config, the Generator shape, the fit-set split and image stacking.

An annotator is a Generator that completes a condition carrying an image (``reference``) with the image's
skin-tone group (``label``: 0 = FST I-II, 1 = III-IV, 2 = V-VI; `bench.data.skintone.SKIN_GROUPS`).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.skintone import SKIN_GROUPS
from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample

logger = logging.getLogger(__name__)

#: The base CNNs of Table 5.1, in the thesis's order (the index salts each one's initialisation seed).
ARCHITECTURES = ("resnet18", "vgg16", "densenet121", "efficientnet-v2", "mobilenet-v2", "vit-b16")

#: Groh et al.'s empirical ITA -> FST thresholds (their notebook's default): I >= 45 > II > 28 > III > 17 > IV > 5 > V > -20 >= VI.
GROH_THRESHOLDS = (45.0, 28.0, 17.0, 5.0, -20.0)


@dataclass(frozen=True)
class SkinToneConfig:
    """Options of the skin-tone annotators ([T] thesis, [A] our choice where it is silent, [I] reference code).

    One config for the whole family (one ``config.yaml``): each annotator reads its own group of options, listed
    in its record as resolved. The CNN options also define the base models of the ensembles.
    """

    # -- ITA annotators ------------------------------------------------------------------------------------
    ita_angle: Literal["arctan", "atan2"] = "arctan"
    """ITA angle: arctan((L*-50)/b*) as thesis Eq. 5.1 [T], or atan2(L*-50, b*) as Groh's and derm_ita's code [I];
    equal for b* > 0."""
    fst_thresholds: Literal["kinyanjui", "groh"] = "kinyanjui"
    """ITA -> FST: Kinyanjui's thresholds (55/41/28/19/10, research 1.3 [T]) or Groh et al.'s empirical ones
    (45/28/17/5/-20, their notebook's default [I])."""
    ycbcr_trim_std: float | None = 1.0
    """ita-ycbcr: keep skin pixels whose L* (and separately b*) lie within this many standard deviations of the
    mean before averaging (Groh's code: 1 [I]); null: no trimming."""
    ycbcr_no_skin: Literal["whole_image", "error"] = "whole_image"
    """ita-ycbcr, when no pixel passes the YCbCr skin rule: the ITA of the whole image (Groh's unmasked variant
    [A]) or an error."""
    patch_resize: Literal["center_crop", "squash"] = "center_crop"
    """ita-8patch: how an image is brought to 256x256, the side the eight fixed 20x20 patches are placed on (Bevan:
    centre crop to the short side, then resize [I]; the task's images are square already)."""
    hair_removal: bool = True
    """ita-8patch: remove hair first (Bevan: black-hat 17x17 cross, threshold 10, inpaint [I])."""
    hair_inpaint: Literal["biharmonic", "telea"] = "biharmonic"
    """ita-8patch hair inpainting: scikit-image's biharmonic inpainting [A: OpenCV is not a dependency] or OpenCV's
    Telea radius 1 as in Bevan's code (needs ``opencv-python``)."""

    # -- base CNNs (also the ensembles' members) ------------------------------------------------------------
    variant: Literal["paper", "mini"] = "paper"
    """``paper``: torchvision's architectures; ``mini``: small random-init variants (bench.downstream.classifiers)."""
    pretrained: bool = True
    """Start from ImageNet weights (thesis [T]), read from ``weights_dir`` or ``$BENCH_WEIGHTS`` (never downloaded)."""
    weights_dir: str | None = None
    """Folder with torchvision's ImageNet checkpoint files."""
    input_size: int = 224
    """Side of the CNN inputs [A: 224, as chapter 4; ViT-B/16 needs 224 in the paper variant]."""
    lr: float = 1e-3
    """SGD learning rate [T]."""
    momentum: float = 0.9
    """SGD momentum [A: as chapter 4's classifiers]."""
    weight_decay: float = 0.0
    """SGD weight decay [A]."""
    batch_size: int = 64
    """Batch size [T]."""
    max_epochs: int = 100
    """Epoch cap [A]."""
    patience: int = 10
    """Early stopping: epochs without a better validation accuracy [T: patience 10 on validation performance]."""
    flips: bool = False
    """Random flips while training [A: not stated]."""
    val_fraction: float = 0.2
    """Validation share when the fit set carries no ``val`` samples: a stratified split seeded by the run seed
    (thesis 80/20 [T]); unused when the task passes its own split (skin-tone does)."""

    # -- ensembles ---------------------------------------------------------------------------------------------
    members: tuple[str, ...] = ("vgg16", "mobilenet-v2", "vit-b16")
    """Base models stacked by the ensembles (thesis: VGG-16, MobileNet-V2, ViT-B-16 [T])."""
    features: Literal["softmax", "logits"] = "softmax"
    """Per-member features of the combiner: class probabilities (3 members x 3 groups = 9 features [A]) or logits."""
    combiner_options: dict = field(default_factory=dict)
    """Keyword arguments of the scikit-learn combiner (defaults otherwise [A: the thesis gives none]); its
    ``random_state`` is derived from the run seed unless given."""

    def validate(self) -> None:
        from bench.config import ConfigError

        unknown = [m for m in self.members if m not in ARCHITECTURES]
        if unknown or not self.members:
            raise ConfigError(f"method.members must name base models among {', '.join(ARCHITECTURES)}; got {list(self.members)}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"method.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.input_size < 32:
            raise ConfigError(f"method.input_size must be >= 32 (VGG-16 halves it five times), got {self.input_size}")


class Annotator(GeneratorBase):
    """Base of the skin-tone annotators: reference image in, skin-tone group out."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"reference"}, requires={"reference"}, returns={"label"})
    Config = SkinToneConfig
    version: ClassVar[str] = "1"

    def annotate(self, images: torch.Tensor, ctx: RunContext) -> list[dict[str, Any]]:
        """Per image (N, 3, H, W) in [0, 1]: ``{"label": group index, ...}`` (extra keys go to the sample's meta)."""
        raise NotImplementedError

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if not conditions:
            return
        images = stack_images([c.reference for c in conditions], None)
        for cond, out in zip(conditions, self.annotate(images, ctx)):
            label = int(out.pop("label"))
            yield Sample(label=label, meta={**cond.meta, "group": SKIN_GROUPS[label], **out})


def _three_channels(image: torch.Tensor) -> torch.Tensor:
    if image is None:
        raise ValueError("a skin-tone condition carries no reference image")
    return image if image.shape[0] == 3 else image.expand(3, -1, -1)


def stack_images(images: Sequence[torch.Tensor], size: int | None) -> torch.Tensor:
    """Images (C, H, W) in [0, 1] -> float (N, 3, S, S); resized (bilinear, antialiased) when ``size`` is given.

    Without ``size`` all images must share one shape (the task's conditions do).
    """
    from bench.tasks.common import resize_image

    out = [_three_channels(im).float() for im in images]
    if size is not None:
        out = [resize_image(im, size) for im in out]
    return torch.stack(out) if out else torch.zeros((0, 3, size or 1, size or 1))


@dataclass
class FitData:
    """The fit set as uint8 tensors at the CNN input size, split into train and validation."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    key: str
    """SHA-256 over the pixels and labels of both parts (keys the cached base models)."""
    split_source: str
    """``task`` (the fit set's ``meta["split"]``) or ``own`` (a stratified split made here)."""


def _stratified_val(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified validation subset: ``round(fraction * n_g)`` of each group (at least 1 if n_g >= 2)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        k = int(round(fraction * len(members)))
        k = max(k, 1) if len(members) >= 2 else 0
        chosen += rng.permutation(members)[:k].tolist()
    return np.sort(np.asarray(chosen, dtype=int))


def prepare_fit_data(train: Sequence[Sample], size: int, val_fraction: float, seed: int) -> FitData:
    """Stack the fit set at ``size`` px (uint8) and split it: by ``meta["split"]`` when it holds ``val`` samples,
    else stratified ``val_fraction`` seeded by ``seed``.

    Raises:
        ValueError: a sample without image or group label, or an empty part.
    """
    images, labels, is_val = [], [], []
    for i, s in enumerate(train):
        if s.image is None or s.label is None:
            raise FitSetError(f"fit sample {s.meta.get('id', i)} lacks {'an image' if s.image is None else 'a skin-tone label'}")
        if not 0 <= int(s.label) < len(SKIN_GROUPS):
            raise ValueError(f"fit sample {s.meta.get('id', i)} has label {s.label}; expected 0..{len(SKIN_GROUPS) - 1}")
        images.append((stack_images([s.image], size)[0] * 255).round().to(torch.uint8))
        labels.append(int(s.label))
        is_val.append(s.meta.get("split") == "val")
    if not images:
        raise FitSetError("the skin-tone annotator got an empty fit set")
    x, y = torch.stack(images), torch.tensor(labels, dtype=torch.long)
    val_mask = np.asarray(is_val)
    source = "task"
    if not val_mask.any():
        val_mask = np.zeros(len(labels), dtype=bool)
        val_mask[_stratified_val(np.asarray(labels), val_fraction, seed)] = True
        source = "own"
    if val_mask.all() or not val_mask.any():
        raise ValueError(f"cannot split {len(labels)} fit samples into train and validation")
    tr, va = torch.from_numpy(np.flatnonzero(~val_mask)), torch.from_numpy(np.flatnonzero(val_mask))
    digest = hashlib.sha256()
    for part in (x[tr], y[tr], x[va], y[va]):
        digest.update(str(tuple(part.shape)).encode())
        digest.update(part.contiguous().numpy().tobytes())
    return FitData(x[tr], y[tr], x[va], y[va], digest.hexdigest(), source)

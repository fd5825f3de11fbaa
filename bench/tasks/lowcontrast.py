"""lowcontrast: low-contrast bias mitigation by fine-tuning pretrained segmenters on generated pairs.

Thesis chapter 5 (Tables 5.3-5.5; research ch5 sections 2 and 4). Protocol:

1. Each segmenter is pretrained on the full training split (early stopping on the validation split).
   The pretrained model is shared by every method of a seed and cached in ``ctx.cache_dir``
   (weights as safetensors plus its per-image test scores).
2. Its per-image IoU on the test split defines the poorly segmented subsets S_x = {IoU < x}
   (S_0.8, S_0.6; on the external set also S_0.4), fixed for every method (research 2.4).
3. The low-contrast training subset is selected with `bench.metrics.contrast` on the real training
   images and masks: ITA difference < 30 degrees (569 of 2594 in ISIC 2018 Task 1). Dataset meta is
   never read for the selection; derm-mini's ground truth is only used to report agreement.
4. The generator gets ``ratio`` conditions per low-contrast image: its mask (layout) and the real image
   (``reference``, the style). Layout augmentation (research 4.1) is the generator's business.
5. Each pretrained segmenter is fine-tuned on the generated pairs only (thesis: lr 1e-4, batch 24;
   stopping rule unstated: early stopping on validation Dice by default) and evaluated on all test
   images and on each S_x; with an external dataset (HAM10000) on it too.

Metric keys: ``dice``, ``iou`` (all test images), ``dice[S_0.6]``, ``iou[S_0.8]`` ...; external:
``dice[ham10000]``, ``iou[ham10000,S_0.4]``. Headline values are means over segmenters (NaN-free:
a model with an empty S_x is left out of that mean); ``comparisons["relative_gain"]`` holds the
thesis' "improvement %" over the pretrained models (mean of per-model ratios, as a fraction).
A method that generates nothing (``real-only``) reports the pretrained models: the "Pretrained" rows.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.interface import Condition, RunContext, Sample, derive_seed
from bench.store import atomic_write_text, new_file_mode, stable_hash
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import open_dataset, save_pair_grid, stack_pairs

logger = logging.getLogger(__name__)

REFERENCE_ARM = "real-only"
"""Per-sample arm name of the pretrained models (the thesis' "Pretrained"; seg-aug's real-only arm)."""


@dataclass(frozen=True)
class LowContrastConfig:
    """Protocol of lowcontrast (thesis chapter 5; [A] marks choices the thesis leaves open)."""

    dataset: str = "isic2018-task1"
    """Dataset id with train/val/test image-mask splits."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset (e.g. derm-mini split sizes)."""
    external_dataset: str | None = None
    """External test set (thesis: ham10000), evaluated when its files are under --data-root; None: none."""
    external_options: dict = field(default_factory=dict)
    """Options of the external dataset."""
    external_split: str = "all"
    """Split of the external dataset (HAM10000: all 10015 images)."""
    external_required: bool = False
    """Fail when the external dataset is missing (False: warn and evaluate without it)."""
    image_size: int = 256
    """Side of the square images the segmenters see [A: 256, the DCSAU-Net convention]."""
    ita_threshold: float = 30.0
    """Low-contrast: ITA difference strictly below this (degrees; thesis 5.2)."""
    ita_aggregation: Literal["region_mean", "pixel_mean"] = "region_mean"
    """ITA region aggregation [A: ITA of the region-mean L*, b*]."""
    ita_angle: Literal["arctan", "atan2"] = "arctan"
    """ITA angle: ``arctan((L*-50)/b*)`` as the thesis writes Eq. 5.1, or ``atan2(L*-50, b*)`` (derm_ita); they
    differ only where a region's mean b* < 0 [A: the thesis's arctan]."""
    ratio: int = 1
    """Generated pairs per low-contrast image (thesis n = 1; ablation 2, 3, 4)."""
    thresholds: tuple[float, ...] = (0.8, 0.6)
    """x of the poorly segmented test subsets S_x = {pretrained IoU < x} (thesis: 0.8, 0.6)."""
    external_thresholds: tuple[float, ...] = (0.6, 0.4)
    """S_x of the external set (thesis Table 5.4: S_0.4, S_0.6)."""
    segmenters: tuple[str, ...] = ("attention-unet", "dcsau-net")
    """Segmenters (thesis: Attention U-Net, DCSAU-Net, FAT-Net; FAT-Net is not implemented)."""
    seg_base: int = 64
    """Width of the segmenters' first level."""
    seg_depth: int = 4
    """Down-sampling steps of the segmenters."""
    lr: float = 1e-3
    """Pretraining Adam learning rate (thesis 5.2)."""
    batch_size: int = 24
    """Pretraining batch size (thesis 5.2)."""
    max_epochs: int = 200
    """Pretraining epoch cap [A]."""
    patience: int = 20
    """Pretraining early-stopping patience on validation Dice (thesis: 20)."""
    finetune_lr: float = 1e-4
    """Fine-tuning learning rate (thesis 5.4.2)."""
    finetune_batch_size: int = 24
    """Fine-tuning batch size (thesis 5.4.2)."""
    finetune_max_epochs: int = 50
    """Fine-tuning epoch cap [A]."""
    finetune_patience: int = 20
    """Fine-tuning early stopping on validation Dice [A: patience 20, as pretraining]; the model kept is
    the best fine-tuning epoch (never the untouched pretrained model)."""
    loss: Literal["bce", "dice", "bce+dice"] = "bce+dice"
    """Segmentation loss of both stages [A]."""
    hflip: bool = False
    """Random flips while training [A: off]."""
    grid_size: int = 16
    """Generated pairs kept as a PNG grid beside the record (0: none)."""
    quality: bool = True
    """Score the generated images' quality (Table 5.2): Frechet distance to the low-contrast real images, and each
    image's LPIPS distance and embedding similarity to its own style reference (spec 4.3 [A])."""
    extractor: str = "inception-v3"
    """Frechet-distance features (``inception-v3`` = FID; ``mini-clip`` in the mini profile: ``fd[mini-clip]``)."""
    similarity_encoder: str = "dinov2-base"
    """Encoder of the reference similarity (thesis "DINO": DINOv2 ViT-B [A], key ``dino[paired]``; ``mini-clip`` in the
    mini profile, key ``clip_i[mini-clip,paired]``)."""
    lpips_trunk: Literal["imagenet", "random"] = "imagenet"
    """LPIPS AlexNet trunk: ImageNet weights from ``weights_dir`` (thesis) or a seeded random proxy (``[alex-random]``)."""
    mask_lpips: bool = True
    """Score the diversity of the generated masks, ``lpips_diversity[masks]`` (Table 5.5)."""
    lpips_pairs: int = 1000
    """Random distinct mask pairs of the mask diversity [A]."""
    pair_seed: int = 0
    """Seed of the LPIPS pairs (part of the protocol)."""
    weights_dir: str | None = None
    """Folder with the Inception / DINOv2 / LPIPS weight files (default: BENCH_WEIGHTS)."""

    def validate(self) -> None:
        from bench.config import ConfigError
        from bench.downstream import SEGMENTERS

        if self.image_size % (2 ** self.seg_depth):
            raise ConfigError(f"task.image_size={self.image_size} must be divisible by 2**seg_depth={2 ** self.seg_depth}")
        if self.ratio < 1:
            raise ConfigError(f"task.ratio must be >= 1, got {self.ratio}")
        for x in (*self.thresholds, *self.external_thresholds):
            if not 0.0 < x <= 1.0:
                raise ConfigError(f"task.thresholds: {x} is not an IoU threshold in (0, 1]")
        if not self.segmenters:
            raise ConfigError("task.segmenters must name at least one segmenter")
        for name in self.segmenters:
            if name not in SEGMENTERS:
                raise ConfigError(f"task.segmenters: {SEGMENTERS.unknown_message(name)}")


def select_low_contrast(samples: Sequence[Sample], threshold: float = 30.0, aggregation: str = "region_mean",
                        angle: str = "arctan") -> tuple[list[int], list[float]]:
    """Indices of the low-contrast samples (ITA difference < ``threshold``) and every sample's ITA difference.

    Computed from the images and masks with `bench.metrics.contrast.ita_contrast`. A sample whose mask
    is empty or covers the whole image has no ITA difference (NaN) and is never selected.
    """
    from bench.metrics.contrast import ita_contrast

    chosen, diffs = [], []
    for i, s in enumerate(samples):
        try:
            d = ita_contrast(s.image, s.mask, aggregation, angle)["ita_difference"]
        except ValueError:
            d = float("nan")
        diffs.append(d)
        if np.isfinite(d) and d < threshold:
            chosen.append(i)
    return chosen, diffs


def _ita_differences(samples: Sequence[Sample], aggregation: str, angle: str) -> list[float]:
    return select_low_contrast(samples, float("inf"), aggregation, angle)[1]


def _subset_scores(dice: np.ndarray, iou: np.ndarray, pre_iou: np.ndarray, thresholds: Sequence[float],
                   prefix: str = "") -> dict[str, float]:
    """``dice[prefix S_x]`` / ``iou[...]`` over the images whose *pretrained* IoU is < x; all images as ``dice[prefix]``."""
    from bench.metrics.segmentation import subset_below

    head = prefix.rstrip(",")
    out = {f"dice[{head}]" if head else "dice": float(dice.mean()), f"iou[{head}]" if head else "iou": float(iou.mean())}
    for x in thresholds:
        idx = subset_below(pre_iou, x)
        name = f"S_{x:g}"
        value_d = float(dice[idx].mean()) if len(idx) else float("nan")
        value_i = float(iou[idx].mean()) if len(idx) else float("nan")
        out[f"dice[{prefix}{name}]"], out[f"iou[{prefix}{name}]"] = value_d, value_i
    return out


class LowContrastTask(Task):
    """Low-contrast bias mitigation (thesis Tables 5.3-5.5)."""

    id: ClassVar[str] = "lowcontrast"
    version: ClassVar[int] = 1
    description: ClassVar[str] = ("fine-tune pretrained segmenters on one generated pair per low-contrast training image; "
                                  "Dice/IoU on all test images and on the poorly segmented subsets S_x")
    needs: ClassVar[frozenset[str]] = frozenset({"image", "mask"})
    main_metric: ClassVar[str] = "iou[S_0.6]"
    # subset (S_x) and external-set scores, FD and LPIPS of the generated pairs: not recomputed at submit
    sample_scores: ClassVar[SampleScores] = SampleScores(("dice", "iou"), arm="finetuned", split="test",
                                                         not_recomputed=("dice[*", "iou[*", "fd*", "lpips*"))
    Config = LowContrastConfig

    def given(self) -> frozenset[str]:
        return frozenset({"mask", "reference"})

    def must_follow(self) -> frozenset[str]:
        return frozenset({"mask"})

    # -- data -----------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        from bench.data.validate import verify_samples

        c = self.config
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        splits = {name: ds.load(name) for name in ("train", "val", "test")}
        for name, samples in splits.items():
            if len(samples) == 0:
                raise DataError(f"dataset '{c.dataset}' split '{name}' is empty")
        checksums = {name: ds.split_checksum(name) for name in splits}
        if getattr(ds, "needs_root", True):
            for samples in splits.values():
                verify_samples(samples)
        extra: dict[str, Any] = {}
        if c.external_dataset:
            try:
                ext = open_dataset(c.external_dataset, c.external_options, c.image_size, ctx)
                external = [s for s in ext.load(c.external_split) if s.mask is not None]
                if not external:
                    raise DataError(f"external dataset '{c.external_dataset}' has no lesion masks")
                checksums["external"] = ext.split_checksum(c.external_split)
                splits["external"] = external
            except DataError as exc:
                if c.external_required:
                    raise
                logger.warning("external dataset '%s' not evaluated: %s", c.external_dataset, exc)
        train = splits["train"]
        samples = [train[i] for i in range(len(train))]  # one pass: ITA selection and (derm-mini) ground truth
        selected, diffs = select_low_contrast(samples, c.ita_threshold, c.ita_aggregation, c.ita_angle)
        extra["low_contrast"] = selected
        extra["train_ita_difference"] = diffs
        extra["low_contrast_truth"] = [s.meta.get("low_contrast") for s in samples]
        if not selected:
            raise DataError(f"no training image of '{c.dataset}' has ITA difference < {c.ita_threshold:g}")
        logger.info("low-contrast training subset: %d of %d images (ITA difference < %g)",
                    len(selected), len(splits["train"]), c.ita_threshold)
        return TaskData(c.dataset, splits, checksums, extra)

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size}

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        """``ratio`` conditions per low-contrast training image: its real mask and the real image as reference."""
        train = data.splits["train"]
        out = []
        for copy in range(self.config.ratio):
            for i in data.extra["low_contrast"]:
                s = train[i]
                out.append(Condition(mask=s.mask, reference=s.image,
                                     meta={"index": len(out), "source_index": i, "source_id": s.meta.get("id", str(i)),
                                           "copy": copy}))
        return out

    # -- evaluation ------------------------------------------------------------------------------
    def _train_config(self, stage: str) -> Any:
        from bench.downstream.trainer import SegTrainConfig

        c = self.config
        if stage == "pretrain":
            return SegTrainConfig(lr=c.lr, batch_size=c.batch_size, max_epochs=c.max_epochs, patience=c.patience,
                                  loss=c.loss, hflip=c.hflip)
        return SegTrainConfig(lr=c.finetune_lr, batch_size=c.finetune_batch_size, max_epochs=c.finetune_max_epochs,
                              patience=c.finetune_patience, loss=c.loss, hflip=c.hflip)

    def _new_model(self, model_id: str) -> torch.nn.Module:
        from bench.downstream import SEGMENTERS

        return SEGMENTERS.get(model_id)(in_channels=3, base=self.config.seg_base, depth=self.config.seg_depth)

    def _score(self, model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, list[float]]:
        from bench.downstream.trainer import predict
        from bench.metrics.segmentation import dice_iou

        dice, iou = dice_iou(predict(model, images), masks)
        return {"dice": dice.tolist(), "iou": iou.tolist()}

    def _pretrained(self, k: int, model_id: str, train: tuple, val: tuple, evals: dict[str, tuple],
                    data: TaskData, ctx: RunContext) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The pretrained segmenter and its scores, cached under a key of everything that determines them."""
        from safetensors.torch import load_file, save_file

        from bench.config import to_dict
        from bench.downstream.trainer import train_segmenter

        c = self.config
        identity = {k2: v for k2, v in to_dict(c).items()
                    if k2 in ("dataset", "dataset_options", "image_size", "seg_base", "seg_depth", "lr", "batch_size",
                              "max_epochs", "patience", "loss", "hflip")}
        key = stable_hash({"task": self.id, "version": self.version, "pretrain": identity,
                           "splits": {s: data.checksums[s] for s in ("train", "val")}, "seed": ctx.seed,
                           "model": model_id}, 16)
        folder = Path(ctx.cache_dir or ctx.work_dir) / "pretrained"
        weights, scores_file = folder / f"{model_id}-{key}.safetensors", folder / f"{model_id}-{key}.json"
        torch.manual_seed(derive_seed(ctx.seed, 100 + k))
        model = self._new_model(model_id)
        if weights.exists() and scores_file.exists():
            logger.info("pretrained %s: cached (%s)", model_id, weights.name)
            model.load_state_dict(load_file(str(weights)))
            info = json.loads(scores_file.read_text())
        else:
            advance = ctx.progress(f"pretrain {model_id}", c.max_epochs)
            result = train_segmenter(model, *train, *val, self._train_config("pretrain"),
                                     seed=derive_seed(ctx.seed, 200 + k), advance=advance)
            model = result.model
            info = {"best_epoch": result.best_epoch, "epochs": result.epochs_run, "best_val_dice": result.best_val_dice,
                    "scores": {}}
            folder.mkdir(parents=True, exist_ok=True)
            tmp = weights.with_name(f"{weights.name}.{os.getpid()}.tmp")  # concurrent runs of a seed share it
            save_file({n: t.detach().contiguous() for n, t in model.state_dict().items()}, str(tmp))
            os.chmod(tmp, new_file_mode())  # safetensors creates it 0600
            tmp.replace(weights)
        changed = False
        for split, (images, masks, checksum) in evals.items():  # scores per split, keyed by the split's checksum
            tag = f"{split}:{checksum[:16]}"
            if tag not in info["scores"]:
                info["scores"][tag] = self._score(model, images, masks)
                changed = True
        if changed:
            atomic_write_text(scores_file, json.dumps(info))
        return model, info

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from bench.downstream.trainer import train_segmenter
        from bench.metrics.stats import relative_gain

        c = self.config
        size = c.image_size
        train = stack_pairs(data.splits["train"], size, "train")
        val = stack_pairs(data.splits["val"], size, "val")
        evals = {"test": (*stack_pairs(data.splits["test"], size, "test"), data.checksums["test"])}
        if "external" in data.splits:
            evals["external"] = (*stack_pairs(data.splits["external"], size, "external"), data.checksums["external"])
        syn = stack_pairs(synthetic, size, "generated")
        ext_name = c.external_dataset or "external"

        per_model: dict[str, dict[str, float]] = {}
        ref_per_model: dict[str, dict[str, float]] = {}
        rows: list[dict[str, Any]] = []
        training: dict[str, Any] = {}
        subset_sizes: dict[str, dict[str, int]] = {}
        ids = {split: [str(s.meta.get("id", i)) for i, s in enumerate(data.splits[split])] for split in evals}
        ita = {split: _ita_differences(data.splits[split], c.ita_aggregation, c.ita_angle) for split in evals}
        for k, model_id in enumerate(c.segmenters):
            model, info = self._pretrained(k, model_id, train, val, evals, data, ctx)
            pre = {split: info["scores"][f"{split}:{evals[split][2][:16]}"] for split in evals}
            training[model_id] = {"pretrain": {n: info[n] for n in ("best_epoch", "epochs", "best_val_dice")}}
            if len(syn[0]):
                advance = ctx.progress(f"fine-tune {model_id}", c.finetune_max_epochs)
                result = train_segmenter(model, *syn, *val, self._train_config("finetune"),
                                         seed=derive_seed(ctx.seed, 300 + k), advance=advance)
                post = {split: self._score(result.model, images, masks) for split, (images, masks, _) in evals.items()}
                training[model_id]["finetune"] = {"best_epoch": result.best_epoch, "epochs": result.epochs_run,
                                                  "best_val_dice": result.best_val_dice}
            else:
                post = pre
            ref_per_model[model_id], per_model[model_id] = {}, {}
            subset_sizes[model_id] = {}
            for split in evals:
                pre_iou = np.asarray(pre[split]["iou"])
                thresholds = c.thresholds if split == "test" else c.external_thresholds
                prefix = "" if split == "test" else f"{ext_name},"
                ref_per_model[model_id].update(_subset_scores(np.asarray(pre[split]["dice"]), pre_iou, pre_iou, thresholds, prefix))
                per_model[model_id].update(_subset_scores(np.asarray(post[split]["dice"]), np.asarray(post[split]["iou"]),
                                                          pre_iou, thresholds, prefix))
                for x in thresholds:
                    subset_sizes[model_id][f"{prefix}S_{x:g}"] = int((pre_iou < x).sum())
                arms = [(REFERENCE_ARM, pre)] + ([("finetuned", post)] if len(syn[0]) else [])
                for arm, scores in arms:
                    rows.extend({"model": model_id, "arm": arm, "split": split, "id": sid, "dice": d, "iou": j,
                                 "pretrained_iou": p, "ita_difference": a}
                                for sid, d, j, p, a in zip(ids[split], scores[split]["dice"], scores[split]["iou"],
                                                           pre[split]["iou"], ita[split]))

        keys = list(next(iter(per_model.values())))
        metrics = {m: _nanmean([v[m] for v in per_model.values()]) for m in keys}
        comparisons: dict[str, Any] = {
            "reference": REFERENCE_ARM,
            "reference_metrics": {m: _nanmean([v[m] for v in ref_per_model.values()]) for m in keys},
            "reference_per_model": ref_per_model,
            "subset_sizes": subset_sizes,
            "training": training,
            "low_contrast_selection": self.selection_summary(data),
        }
        if len(syn[0]):
            comparisons["relative_gain"] = {}
            for m in keys:
                ok = [mid for mid in per_model if np.isfinite(per_model[mid][m]) and ref_per_model[mid][m]]
                comparisons["relative_gain"][m] = relative_gain({i: per_model[i][m] for i in ok},
                                                                {i: ref_per_model[i][m] for i in ok}) if ok else None
        if len(syn[0]):  # per-image scores pooled over segmenters, fine-tuned vs pretrained (as seg-aug)
            from bench.metrics.stats import paired_ttest

            test_rows = [r for r in rows if r["split"] == "test"]
            comparisons["paired_ttest"] = {}
            for x in (None, *c.thresholds):  # all images, then each S_x (pretrained IoU < x)
                part = [r for r in test_rows if x is None or r["pretrained_iou"] < x]
                after = [r for r in part if r["arm"] == "finetuned"]
                before = [r for r in part if r["arm"] == REFERENCE_ARM]
                if len(after) < 2:
                    continue
                for m in ("dice", "iou"):
                    key = m if x is None else f"{m}[S_{x:g}]"
                    comparisons["paired_ttest"][key] = paired_ttest([r[m] for r in after], [r[m] for r in before])
        higher = {m: True for m in keys}
        if len(syn[0]) > 1:
            generated = self._generation_scores(syn, synthetic, data)
            metrics.update(generated)
            higher.update({m: not (m.startswith("fd[") or m.startswith("lpips[") or m == "lpips") for m in generated})
        artifacts = {}
        if c.grid_size and len(syn[0]):
            grid = save_pair_grid(syn[0], syn[1], Path(ctx.work_dir) / "samples.png", c.grid_size)
            if grid is not None:
                artifacts["samples"] = str(grid)
        counts = {"real_train": len(train[0]), "low_contrast_train": len(data.extra["low_contrast"]),
                  "generated": len(syn[0]), "val": len(val[0]), "test": len(evals["test"][0])}
        if "external" in evals:
            counts["external"] = len(evals["external"][0])
        return Evaluation(metrics=metrics, higher_is_better=higher, per_model=per_model,
                          comparisons=comparisons, per_sample=rows, counts=counts, artifacts=artifacts)

    def _generation_scores(self, syn: tuple[torch.Tensor, torch.Tensor], synthetic: Sequence[Sample],
                           data: TaskData) -> dict[str, float]:
        """Table 5.2 (image quality, against each image's own style reference) and Table 5.5 (mask diversity)."""
        c = self.config
        out: dict[str, float] = {}
        if c.mask_lpips:
            from bench.tasks.common import mask_diversity

            key, value = mask_diversity(syn[1], c.lpips_trunk, c.weights_dir, c.lpips_pairs, c.pair_seed)
            out[key] = value
        if not c.quality:
            return out
        from bench.metrics.embedding import EmbeddingScorer
        from bench.metrics.image import FrechetDistance, lpips_pairs
        from bench.tasks.common import load_fd_extractor, load_lpips_trunk, metric_key

        train, chosen = data.splits["train"], data.extra["low_contrast"]
        sources = []  # generated sample i follows condition i: low-contrast image chosen[i % n] (see `conditions`)
        for i, s in enumerate(synthetic):
            sources.append(int(s.meta.get("source_index", chosen[i % len(chosen)])))
        refs = stack_pairs([train[j] for j in sources], c.image_size, "reference")[0]
        real = stack_pairs([train[j] for j in chosen], c.image_size, "low-contrast")[0]
        fd = FrechetDistance(load_fd_extractor(c.extractor, c.weights_dir), c.extractor)
        fd.update(real, real=True)
        fd.update(syn[0], real=False)
        out.update(fd.compute())
        model, suffix = load_lpips_trunk(c.lpips_trunk, c.weights_dir, c.pair_seed)
        with torch.no_grad():
            out[metric_key("lpips", suffix)] = float(lpips_pairs(model, syn[0], refs).double().mean())
        encoder = load_fd_extractor(c.similarity_encoder, c.weights_dir)
        metric = "clip_i" if "clip" in c.similarity_encoder else "dino"
        out.update(EmbeddingScorer(encoder, c.similarity_encoder, metric=metric).image_similarity(syn[0], refs, paired=True))
        return out

    def selection_summary(self, data: TaskData) -> dict[str, Any]:
        """Size of the ITA selection and, where the dataset knows the truth (derm-mini), its agreement with it."""
        train = data.splits["train"]
        chosen = set(data.extra["low_contrast"])
        out: dict[str, Any] = {"threshold": self.config.ita_threshold, "n_selected": len(chosen), "n_train": len(train)}
        truth = data.extra.get("low_contrast_truth") or []
        if truth and all(t is not None for t in truth):
            pred = np.array([i in chosen for i in range(len(train))])
            true = np.array(truth, dtype=bool)
            out["ground_truth"] = {"n_true": int(true.sum()), "agreement": float((pred == true).mean()),
                                   "false_positives": int((pred & ~true).sum()), "false_negatives": int((~pred & true).sum())}
        return out


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")

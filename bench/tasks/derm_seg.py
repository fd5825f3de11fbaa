"""seg-aug: segmentation augmentation with generated image-mask pairs.

Thesis chapter 4, section 4.4.4 (Tables 4.5-4.7); MedDiff-FT and DiffBoost use
the same protocol on other datasets. The generator is fitted on the training
split, asked for ``n_generate`` image-mask pairs (conditioned on real training
masks, or unconditioned), and each downstream segmenter is trained twice with
the same initialisation: on the real pairs only (the "Original" arm, shared by
every method and cached) and on real + synthetic pairs. Both are scored on the
test split by per-image Dice and IoU (empty prediction on empty mask = 1), and
compared by a paired t-test over per-image IoU pooled over segmenters.
The same models are scored on an external transfer set when one is configured
(``dice[ph2]`` / ``iou[ph2]``, Table 4.6), and the generated masks' diversity is
``lpips_diversity[masks]`` (Table 4.7; masks below 64 px are upsampled by nearest
neighbour first, as AlexNet's pooling needs).
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.data.validate import verify_samples
from bench.interface import Condition, RunContext, Sample, derive_seed
from bench.store import atomic_write_text, note_computed_here, note_reuse, stable_hash
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import (generator_view, open_dataset, procedural_beside_real, prompt_form, remove_checkpoints,
                                resolution_text, save_pair_grid, stack_pairs, training_text)

logger = logging.getLogger(__name__)

#: Per-image scores added by ``surface_metrics`` (DiffBoost Table II); HD95 and ASSD are lower-is-better.
SURFACE_COLUMNS = ("precision", "recall", "hd95", "assd")


@dataclass(frozen=True)
class SegAugConfig:
    """Protocol of seg-aug (thesis section 4.4.4; [I] marks choices the thesis leaves open)."""

    dataset: str = "isic2018-task1"
    """Dataset id (train/val/test splits with masks)."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset (e.g. derm-mini split sizes)."""
    image_size: int = 256
    """Side of the square images the segmenters see [I: 256]."""
    generator_image_size: int | None = None
    """Side at which generators get the training images and conditions, read again from the original files
    (paper: 512, thesis section 4.4 "input images are resized to 512x512" for the diffusion models); None: the
    segmenters' ``image_size`` (mini: mini-sd works at 32 px on the 64 px view)."""
    n_real: int | None = None
    """Real training pairs given to the segmenters: S_1k = 1000, S_2.5k = all (None)."""
    subset_seed: int = 0
    """Seed choosing the S_n subset (part of the protocol, not the run seed) [I]."""
    fit_on: Literal["train", "real-subset"] = "train"
    """Generator fitted on the whole training split or only on the S_n subset [I: whole split]."""
    n_generate: int = 2500
    """Synthetic pairs generated (thesis: 2500)."""
    conditioning: Literal["real-masks", "none", "generated-masks"] = "real-masks"
    """Condition generation on real training masks (one per mask, thesis), on nothing, or on the masks another
    method generated (``mask_source``; the thesis conditions its baselines on DiDGen's generated masks)."""
    generated_mask_methods: tuple[str, ...] = ("controlnet", "pix2pixhd", "zestguide", "attn-refocus")
    """Mask-to-image baselines the thesis conditions on DiDGen's generated masks (Table 4.5, section 4.4.4): a run
    of one of them with ``conditioning: real-masks`` is refused, naming the settings of the thesis protocol
    (``docs/reproduce/ch4-mini.yaml`` / ``ch4-paper.yaml`` show the dependency). Empty: any method on real masks."""
    mask_source: str | None = None
    """With ``conditioning: generated-masks``: another method's run whose generated masks condition this method, in
    order (cycled if fewer): its run id (record under ``<work-dir>/records``), record file, or generate folder."""
    segmenters: tuple[str, ...] = ("unet", "attention-unet")
    """Downstream segmenters (thesis: U-Net, Attention U-Net, DCSAU-Net, XBound-Former; the paper profile's is
    ``xbound-former-pvt``, its ImageNet PVT-v2 encoder and boundary supervision)."""
    seg_base: int = 64
    """Width of the segmenters' first level."""
    seg_depth: int = 4
    """Down-sampling steps of the segmenters."""
    lr: float = 1e-3
    """Adam learning rate (thesis)."""
    batch_size: int = 16
    """Batch size (thesis)."""
    max_epochs: int = 200
    """Epoch cap [I]."""
    patience: int = 20
    """Early-stopping patience on validation Dice (thesis: 20)."""
    loss: Literal["bce", "dice", "bce+dice", "focal+dice", "dice+ce"] = "bce+dice"
    """Segmentation loss [I: BCE + Dice]; ``focal+dice`` (MedDiff-FT) and ``dice+ce`` (DiffBoost) through MONAI."""
    hflip: bool = False
    """Random flips while training segmenters [I: off]."""
    grid_size: int = 16
    """Generated pairs kept as a PNG grid beside the record (0: none)."""
    transfer_dataset: str | None = None
    """External test set the trained segmenters are also scored on (Table 4.6 and the paper profile: ``ph2``, all
    200 images, read from the same --data-root); None: none (other datasets, MedDiff-FT / DiffBoost protocols)."""
    transfer_options: dict = field(default_factory=dict)
    """Options of the transfer dataset."""
    transfer_split: str = "all"
    """Split of the transfer dataset used (PH2: all)."""
    transfer_key: str = "ph2"
    """Suffix of the transfer metrics, ``dice[<transfer_key>]`` / ``iou[<transfer_key>]`` (Table 4.6)."""
    mask_lpips: bool = True
    """Score the diversity of the generated masks, ``lpips_diversity[masks]`` (Table 4.7)."""
    lpips_trunk: Literal["imagenet", "random"] = "imagenet"
    """LPIPS AlexNet trunk: ImageNet weights from ``weights_dir`` (thesis) or a seeded random proxy (mini)."""
    lpips_pairs: int = 1000
    """Random distinct mask pairs scored [I]."""
    weights_dir: str | None = None
    """Folder with the LPIPS weight files (default: BENCH_WEIGHTS_DIR)."""
    # -- DiffBoost's downstream protocol (spec B.9; issue 21). Defaults keep the thesis protocol (and its hashes).
    optimizer: Literal["adam", "adamw"] = "adam"
    """Segmenter optimiser: ``adam`` (thesis 4.4.4) or ``adamw`` (DiffBoost B.9, torch's default weight decay)."""
    folds: int | None = None
    """None: the dataset's train / val / test splits. k: DiffBoost's k-fold case-level cross-validation (B.8-B.9:
    3) over every labelled sample of the dataset (train + val + test splits pooled), cases = ``meta["case"]`` (a
    sample without one is its own case), sorted, split by ``sklearn KFold(n_splits=k, shuffle=False)``; each fold's
    segmenters train on the other folds' real pairs (+ the method's synthetic pairs whose ``source_id`` is one of
    them) and are scored on the fold."""
    fold: int | None = None
    """With ``folds``: run and score only fold ``fold`` (0-based), and give the generator that fold's training cases
    to fit on (``fit_set``). DiffBoost fits one generator per fold (spec B.6, B.14: "full training fold"), so a
    method that fits on data runs one record per fold; a run of all folds (``fold: null``) refuses to fit a
    generator, whose weights would otherwise see the other folds' test images."""
    model_selection: Literal["val", "test-fold"] = "val"
    """With ``folds``: the set early stopping / checkpoint selection reads. ``val`` (spec B.9/B.14 [O]): a held-out
    share ``fold_val_fraction`` of the training folds' cases (seeded by ``subset_seed``), not trained on;
    ``test-fold``: the test fold itself, as DiffBoost's code does (its eval loader is the test fold, B.11 item 7;
    the paper does not say). Without ``folds`` the dataset's val split is used."""
    fold_val_fraction: float = 0.2
    """Share of a fold's training cases held out for validation with ``model_selection: val`` [O]."""
    fold_aggregate: Literal["mean-of-folds", "pooled"] = "mean-of-folds"
    """Across folds: ``mean-of-folds`` (B.9 [C], ``utils/summary.py``: mean of the fold means, std = sqrt(mean of
    the fold variances)) or ``pooled`` (mean and std over all test images of all folds)."""
    surface_metrics: bool = False
    """Also report per-image precision, recall, HD95 and ASSD (DiffBoost Table II). HD95 / ASSD are in mm when every
    scored image has ``meta["spacing"]`` (row, col mm per pixel at the delivered size; rescaled to ``image_size``),
    in pixels otherwise; ``comparisons.units`` names the unit."""
    surface_spacing: Literal["meta", "pixel"] = "meta"
    """HD95 / ASSD units: ``meta`` (mm from ``meta["spacing"]`` where every scored image has it) or ``pixel``
    (DiffBoost Table II's breast-ultrasound column: BUSI has no spacing, so the paper reports pixels)."""
    eval_unit: Literal["image", "case"] = "image"
    """Unit of the test scores: ``image`` (each 2D image or slice; DiffBoost's breast ultrasound) or ``case``
    (DiffBoost's code for prostate MRI and spleen CT, "mean ± std over cases"): a case's test slices (``meta["case"]``;
    a sample without one is its own case) stacked in ``meta["z"]`` order into one volume; Dice, IoU, precision and
    recall over its voxels, HD95 / ASSD in 3D with spacing (``meta["slice_thickness"]``, row, col) in mm, or in
    pixels with a z step of 1 where there is no spacing. Rows, means and the t-test are then per case."""
    surface_convention: Literal["medpy", "monai"] = "medpy"
    """HD95 reduction (`bench.metrics.surface`): ``medpy`` (DiffBoost's code) or ``monai``."""
    surface_empty: Literal["diagonal", "nan"] = "diagonal"
    """HD95 / ASSD when exactly one of prediction and reference is empty: the image diagonal (spec C.1 [O]) or NaN
    (excluded from means); both empty is always NaN (excluded)."""
    # -- MedDiff-FT's nnU-Net (spec A.9; issue 21). Defaults are the mini twin's (records written before the keys
    # existed are read with them) and are left out of the protocol hash, so the shipped records keep their hashes;
    # the paper profile sets nnunet: nnunetv2 (bench/tasks/configs/seg-aug.yaml).
    nnunet: Literal["nnunetv2", "dynunet"] = "dynunet"
    """What segmenter ``nnu-net`` runs. ``nnunetv2`` (paper profile): nnU-Net v2's own pipeline through the nnunetv2
    package (raw-dataset export, fingerprint, default plan, ``2d`` preprocessing and training on a split of the arm's
    pairs vs the val split, prediction; `bench.downstream.nnunet`), with nnU-Net's own loss, optimiser, augmentation
    and schedule (``loss`` etc. do not apply); needs ``pip install 'medsynth-bench[nnunet]'``. ``dynunet`` (mini,
    smoke): MONAI DynUNet with a fixed nnU-Net-style 2D plan, trained by the task's trainer and loss like the other
    segmenters. The id ``nnunetv2`` in ``segmenters`` always runs nnunetv2."""
    nnunet_trainer: str = "nnUNetTrainer"
    """nnunetv2 trainer class (nnU-Net's default: 1000 epochs x 250 iterations; its variants such as
    ``nnUNetTrainer_100epochs`` are found by nnU-Net's lookup)."""
    nnunet_epochs: int | None = None
    """nnunetv2 epochs; None: the trainer's own (1000, the paper profile)."""
    nnunet_iterations: int | None = None
    """nnunetv2 training iterations per epoch (validation: a fifth); None: the trainer's own (250 / 50)."""
    nnunet_checkpoint: Literal["best", "final"] = "best"
    """nnunetv2 weights that predict: ``best`` (EMA pseudo-Dice on the val split; spec A.9 "the best-performing
    weights on the validation set") or ``final`` (nnU-Net's default)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.image_size % (2 ** self.seg_depth):
            raise ConfigError(f"task.image_size={self.image_size} must be divisible by 2**seg_depth={2 ** self.seg_depth}")
        if self.n_real is not None and self.n_real < 1:
            raise ConfigError(f"task.n_real must be a positive integer or null, got {self.n_real}")
        if self.n_generate < 0:
            raise ConfigError(f"task.n_generate must be >= 0, got {self.n_generate}")
        if not self.segmenters:
            raise ConfigError("task.segmenters must name at least one segmenter")
        if self.conditioning == "generated-masks" and not self.mask_source:
            raise ConfigError("task.conditioning=generated-masks needs task.mask_source (a generate-stage folder)")
        if self.folds is not None:
            if self.folds < 2:
                raise ConfigError(f"task.folds must be null or an integer >= 2, got {self.folds}")
            if self.n_real is not None:
                raise ConfigError("task.folds uses every labelled sample of the dataset: set task.n_real to null")
            if self.transfer_dataset:
                raise ConfigError("task.folds does not score a transfer set: set task.transfer_dataset to null")
            if self.fold is not None and not 0 <= self.fold < self.folds:
                raise ConfigError(f"task.fold must be in 0..{self.folds - 1} (task.folds={self.folds}), got {self.fold}")
        elif self.fold is not None:
            raise ConfigError("task.fold selects one of task.folds: set task.folds (DiffBoost: 3) or task.fold to null")
        if not 0.0 < self.fold_val_fraction < 1.0:
            raise ConfigError(f"task.fold_val_fraction must be in (0, 1), got {self.fold_val_fraction}")
        from bench.downstream import SEGMENTERS

        for name in self.segmenters:
            if name not in SEGMENTERS:
                raise ConfigError(f"task.segmenters: {SEGMENTERS.unknown_message(name)}")
        for key in ("nnunet_epochs", "nnunet_iterations"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"task.{key} must be a positive integer or null, got {value}")

    def segmenter_id(self, name: str) -> str:
        """The registered segmenter ``name`` runs as: ``nnu-net`` is ``nnunetv2`` or the DynUNet twin (``nnunet``)."""
        return "nnunetv2" if name == "nnu-net" and self.nnunet == "nnunetv2" else name


def nnunet_folder(checkpoint: Path) -> Path:
    """The folder of an arm's nnU-Net v2 run (raw, preprocessed, results, predictions), beside its checkpoint file:
    removed with the checkpoints once the arm's scores are stored."""
    return Path(checkpoint).with_suffix(".nnunet")


def resolve_generate_dir(source: str, work_dir: Path | None = None) -> Path:
    """The generate-stage folder named by ``source``: the folder itself, a record file, or a run id whose record
    is under ``<work_dir>/records`` (the record's ``stages.generate`` is relative to its work dir)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    record_file = path if path.suffix == ".json" and path.is_file() else None
    if record_file is None and work_dir is not None and (Path(work_dir) / "records" / f"{source}.json").is_file():
        record_file = Path(work_dir) / "records" / f"{source}.json"
    if record_file is None:
        raise DataError(f"task.mask_source={source}: not a generate-stage folder, a record file or a run id "
                        f"under {Path(work_dir or '.') / 'records'}")
    stage = json.loads(record_file.read_text()).get("stages", {}).get("generate")
    folder = record_file.parent.parent / stage if stage else None
    if folder is None or not folder.is_dir():
        raise DataError(f"task.mask_source={source}: the record names no generate folder that exists "
                        f"({folder}); pass the folder itself")
    return folder


def portable_mask_source(source: str, work_dir: Path | None = None) -> str:
    """``mask_source`` without this machine's paths: a record file becomes its run id, a generate folder its
    path relative to the work dir (else its name); a run id stays as it is."""
    path = Path(source).expanduser()
    if path.suffix == ".json" and path.is_file():
        return str(json.loads(path.read_text()).get("run_id") or path.stem)
    if path.is_dir():
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(Path(work_dir or ".").resolve()).as_posix()
        return path.name
    return source


def _generated_masks(source: str | None, work_dir: Path | None = None) -> list[torch.Tensor]:
    """Masks of the shards in another run's generate stage, in shard order."""
    from bench.runner import load_shard

    if not source:
        raise DataError("task.conditioning=generated-masks needs task.mask_source (a generate-stage folder or run id)")
    folder = resolve_generate_dir(source, work_dir)
    shards = sorted(folder.glob("shard-*.json"))
    masks = [s.mask for shard in shards for s in load_shard(shard.with_suffix("")) if s.mask is not None]
    if not masks:
        raise DataError(f"task.mask_source={source}: no generated masks found in {folder} (expected shard-*.json)")
    return masks


class SegAugTask(Task):
    """Segmentation augmentation (thesis Tables 4.5-4.7)."""

    id: ClassVar[str] = "seg-aug"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "train segmenters on real + generated image-mask pairs; Dice/IoU on the test split"
    needs: ClassVar[frozenset[str]] = frozenset({"image", "mask"})
    main_metric: ClassVar[str] = "dice"
    # test and transfer-set rows (split column: test / the transfer key); mask diversity is not in the file
    sample_scores: ClassVar[SampleScores] = SampleScores(("dice", "iou"), split="test", split_metrics=True,
                                                         not_recomputed=("dice[*", "iou[*", "lpips_diversity*"),
                                                         optional_columns=SURFACE_COLUMNS)
    #: Keys added for DiffBoost's protocol (issue 21), left out of the protocol hash at the values that keep the
    #: thesis protocol, so the shipped records keep their hashes.
    protocol_left_out_at: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "folds": None, "fold": None, "model_selection": "val", "fold_val_fraction": 0.2,
        "fold_aggregate": "mean-of-folds", "surface_metrics": False, "surface_spacing": "meta", "eval_unit": "image", "surface_convention": "medpy",
        "surface_empty": "diagonal", "nnunet": "dynunet", "nnunet_trainer": "nnUNetTrainer", "nnunet_epochs": None,
        "nnunet_iterations": None, "nnunet_checkpoint": "best"}
    Config = SegAugConfig
    # Table 4.5 ranks DiDGen (real masks) beside baselines conditioned on DiDGen's masks: one protocol.
    generator_inputs: ClassVar[frozenset[str]] = frozenset({"conditioning", "mask_source", "generator_image_size",
                                                            "generated_mask_methods"})
    inputs_left_out_at: ClassVar[dict[str, Any]] = {
        "generator_image_size": None, "generated_mask_methods": ["controlnet", "pix2pixhd", "zestguide", "attn-refocus"]}
    #: Config keys that do not change a real-only arm (it is shared by every method and conditioning).
    ARM_FREE_KEYS: ClassVar[frozenset[str]] = frozenset({
        "conditioning", "mask_source", "generator_image_size", "generated_mask_methods", "n_generate", "fit_on",
        "segmenters", "grid_size", "mask_lpips", "lpips_trunk", "lpips_pairs", "weights_dir"})

    def check_method(self, method_id: str, capabilities: Any, produces_samples: bool = True) -> None:
        from bench.tasks.common import refuse_real_masks

        super().check_method(method_id, capabilities, produces_samples)
        refuse_real_masks(self.id, method_id, self.config.generated_mask_methods, self.config.conditioning, "didgen",
                          "4.4.4, Table 4.5")

    def given(self) -> frozenset[str]:
        if self.config.conditioning == "generated-masks":
            return frozenset({"mask"})
        return frozenset({"mask", "reference"}) if self.config.conditioning == "real-masks" else frozenset()

    def must_follow(self) -> frozenset[str]:
        return frozenset({"mask"}) if self.config.conditioning in ("real-masks", "generated-masks") else frozenset()

    # -- data -----------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        c = self.config
        if any(c.segmenter_id(m) == "nnunetv2" for m in c.segmenters):  # one error line before any work
            from bench.downstream.nnunet import check_trainer, require_nnunetv2

            require_nnunetv2()
            check_trainer(c.nnunet_trainer)
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        splits = {name: ds.load(name) for name in ("train", "val", "test")}
        for name, samples in splits.items():
            if len(samples) == 0:
                raise DataError(f"dataset '{c.dataset}' split '{name}' is empty")
        if c.n_real is not None and c.n_real > len(splits["train"]):
            raise DataError(f"task.n_real={c.n_real} exceeds the {len(splits['train'])} training pairs of '{c.dataset}'")
        checksums = {name: ds.split_checksum(name) for name in splits}
        if getattr(ds, "needs_root", True):  # files on disk: a corrupt one stops the run here, named
            for samples in splits.values():
                verify_samples(samples)
        extra: dict[str, Any] = {}
        for name in ("train", "val", "test") if c.folds else ("train",):  # folds draw fit sets from every split
            view = generator_view(c.dataset, c.dataset_options, c.image_size, c.generator_image_size, ctx, split=name,
                                  like=splits[name])
            if view is not None:
                extra[f"generator_{name}"] = view
        tds = open_dataset(c.transfer_dataset, c.transfer_options, c.image_size, ctx) if c.transfer_dataset else None
        if tds is not None and not procedural_beside_real(ds, tds, "transfer dataset", "transfer_dataset"):
            splits["transfer"] = tds.load(c.transfer_split)
            checksums["transfer"] = tds.split_checksum(c.transfer_split)
            if len(splits["transfer"]) == 0:
                raise DataError(f"transfer dataset '{c.transfer_dataset}' split '{c.transfer_split}' is empty")
            if getattr(tds, "needs_root", True):
                verify_samples(splits["transfer"])
        return TaskData(c.dataset, splits, checksums, extra)

    def real_indices(self, data: TaskData) -> list[int]:
        n_train = len(data.splits["train"])
        if self.config.n_real is None or self.config.n_real >= n_train:
            return list(range(n_train))
        rng = np.random.default_rng(self.config.subset_seed)
        return sorted(rng.choice(n_train, size=self.config.n_real, replace=False).tolist())

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size,
                "fit_on": c.fit_on, "n_real": c.n_real if c.fit_on == "real-subset" else None,
                "subset_seed": c.subset_seed,
                **({"generator_image_size": c.generator_image_size} if c.generator_image_size else {}),
                # each fold's generator fits on that fold's training cases: its own fit and generation stages (a
                # run of all folds hands no fit set, so its keys stay as they were)
                **({"folds": c.folds, "fold": c.fold} if c.folds and c.fold is not None else {})}

    def recorded_config(self, config: dict[str, Any], work_dir: Path) -> dict[str, Any]:
        source = config.get("mask_source")
        return {**config, "mask_source": portable_mask_source(source, work_dir)} if source else config

    def generation_identity(self) -> dict[str, Any]:
        """Conditions depend on the fit set and the conditioning only: S_1k and S_2.5k share one generation."""
        c = self.config
        return {**self.fit_identity(), "n_generate": c.n_generate, "conditioning": c.conditioning,
                "mask_source": c.mask_source}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The training pairs (or the S_n subset) at the generator's resolution; with ``folds``, fold ``fold``'s
        training cases. A run of all folds has no leak-free fit set: a method that reads it is refused (methods
        that fit nothing, real-only or classic-aug, never do)."""
        c = self.config
        if c.folds and c.fold is None:
            return _RefusedFitSet(f"task.folds={c.folds} with a generator that fits on data needs one run per fold "
                                  f"(--set task.fold=0 ... {c.folds - 1}): fitted once, its weights would see the "
                                  "test folds")
        return self._generator_pool(data)

    def _generator_pool(self, data: TaskData) -> Sequence[Sample]:
        """The real pairs generators fit on and are conditioned by (at the generator's resolution)."""
        c = self.config
        if c.folds:
            names = ("train", "val", "test")
            pool = [s for name in names for s in data.splits[name]]
            generator_pool = [s for name in names for s in data.extra.get(f"generator_{name}", data.splits[name])]
            if c.fold is None:  # conditioning only (methods that do not fit): _plan drops renderings of test images
                return generator_pool
            return [generator_pool[i] for i in self._fold_split(pool, c.fold)[0]]
        train = data.extra.get("generator_train", data.splits["train"])
        if self.config.fit_on == "real-subset":
            return train.subset(self.real_indices(data)) if hasattr(train, "subset") else [train[i] for i in self.real_indices(data)]
        return train

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        c = self.config
        if c.conditioning == "none":
            return [Condition(meta={"index": i}) for i in range(c.n_generate)]
        if c.conditioning == "generated-masks":
            masks = _generated_masks(c.mask_source, ctx.work_dir)
            return [Condition(mask=masks[i % len(masks)], meta={"index": i, "source_id": f"generated-{i % len(masks)}"})
                    for i in range(c.n_generate)]
        pool = self._generator_pool(data)
        # One condition per real mask in a seeded order, cycling when more pairs than masks are asked for.
        order = np.random.default_rng(derive_seed(c.subset_seed, 1)).permutation(len(pool))
        out = []
        for i in range(c.n_generate):
            s = pool[int(order[i % len(pool)])]
            out.append(Condition(mask=s.mask, reference=s.image, meta={"index": i, "source_id": s.meta.get("id")}))
        return out

    def describe_generator_inputs(self, method_id: str, method_config: Any) -> list[dict[str, str]]:
        c = self.config
        resolution = resolution_text(c.generator_image_size, c.image_size, method_config)
        subset = f"S_n subset (n_real={c.n_real})" if c.fit_on == "real-subset" and c.n_real else "whole train split"
        rows = [{"input": "fit set", "resolution": resolution, "source": f"{c.dataset} {subset}, image + mask",
                 "prompt": training_text(method_config)}]
        source = {"real-masks": "real training masks, one per condition (the real image as reference)",
                  "none": "nothing (unconditioned pairs)",
                  "generated-masks": f"masks generated by run {c.mask_source} (thesis: DiDGen's, Table 4.5)"}
        rows.append({"input": f"conditions x{c.n_generate}",
                     "resolution": resolution if c.conditioning == "real-masks" else "the source run's masks",
                     "source": source[c.conditioning], "prompt": prompt_form(method_config, given=None)})
        return rows

    # -- evaluation ------------------------------------------------------------------------------
    def _train_config(self) -> Any:
        from bench.downstream.trainer import SegTrainConfig

        c = self.config
        return SegTrainConfig(lr=c.lr, batch_size=c.batch_size, max_epochs=c.max_epochs, patience=c.patience,
                              loss=c.loss, hflip=c.hflip, optimizer=c.optimizer)

    def _score(self, pred: torch.Tensor, y: torch.Tensor, spacings: Sequence[Any] | None,
               cases: Sequence[tuple[str, list[int], Any]] | None = None) -> dict[str, list[float]]:
        """Per-image Dice and IoU, and with ``surface_metrics`` precision, recall, HD95 and ASSD; per case with
        ``cases`` (case id, its slice indices in z order, its 3D spacing or None: `case_volumes`)."""
        from bench.metrics.segmentation import dice_iou, precision_recall

        c = self.config
        if cases is not None:  # a case's voxels as one (D * H, W) image for the overlap scores, 3D for distances
            from bench.metrics.surface import hd95_assd

            out: dict[str, list[float]] = {k: [] for k in ("dice", "iou", *(SURFACE_COLUMNS if c.surface_metrics else ()))}
            for _, idx, spacing in cases:
                vp, vt = pred[idx].reshape(1, -1, pred.shape[-1]), y[idx].reshape(1, -1, y.shape[-1])
                (dice,), (iou,) = dice_iou(vp, vt)
                out["dice"].append(float(dice))
                out["iou"].append(float(iou))
                if c.surface_metrics:
                    (precision,), (recall,) = precision_recall(vp, vt)
                    hd95, assd = hd95_assd(pred[idx], y[idx], spacing, c.surface_convention, c.surface_empty)
                    out["precision"].append(float(precision))
                    out["recall"].append(float(recall))
                    out["hd95"].append(hd95)
                    out["assd"].append(assd)
            return out
        dice, iou = dice_iou(pred, y)
        out = {"dice": dice.tolist(), "iou": iou.tolist()}
        if c.surface_metrics:
            from bench.metrics.surface import hd95_assd

            precision, recall = precision_recall(pred, y)
            out["precision"], out["recall"] = precision.tolist(), recall.tolist()
            pairs = [hd95_assd(pred[i], y[i], spacings[i] if spacings else None, c.surface_convention, c.surface_empty)
                     for i in range(len(pred))]
            out["hd95"], out["assd"] = [h for h, _ in pairs], [a for _, a in pairs]
        return out

    def _run_arm(self, model_index: int, model_id: str, images: torch.Tensor, masks: torch.Tensor,
                 val: tuple[torch.Tensor, torch.Tensor], tests: dict[str, tuple],
                 ctx: RunContext, label: str, checkpoint: Path | None = None, hook: Any = None) -> dict[str, Any]:
        """Train one segmenter on (images, masks) and score it on each of ``tests`` (``(x, y)`` or ``(x, y,
        spacings)``). ``checkpoint``: its per-epoch state file (default ``<work dir>/checkpoints/<label>-<index>-
        <model>.pt``), from which a killed training resumes (the evaluate stage's folder is the same when the run is
        started again); `remove_checkpoints` deletes them at the end."""
        from bench.downstream import SEGMENTERS
        from bench.downstream.trainer import predict, train_segmenter

        c = self.config
        # Same initialisation for the real and the augmented arm of one model: a paired comparison.
        torch.manual_seed(derive_seed(ctx.seed, 100 + model_index))
        factory = SEGMENTERS.get(c.segmenter_id(model_id))
        checkpoint = checkpoint or Path(ctx.work_dir) / "checkpoints" / f"{label}-{model_index}-{model_id}.pt"
        if getattr(factory, "trains_itself", False):  # nnU-Net v2: its own pipeline in a folder beside the checkpoint
            return self._run_nnunet(model_index, model_id, images, masks, val, tests, ctx, label,
                                    nnunet_folder(checkpoint), hook)
        # a segmenter with pretrained parts (xbound-former-pvt) reads them from the task's weights dir
        extra = {"weights_dir": c.weights_dir} if "weights_dir" in inspect.signature(factory).parameters else {}
        model = factory(in_channels=images.shape[1], base=c.seg_base, depth=c.seg_depth, **extra)
        advance = ctx.progress(f"{label} {model_id}", c.max_epochs)
        result = train_segmenter(model, images, masks, val[0], val[1], self._train_config(),
                                 seed=derive_seed(ctx.seed, 200 + model_index), advance=advance, checkpoint=checkpoint,
                                 hook=hook)
        arm: dict[str, Any] = {"best_epoch": result.best_epoch, "epochs": result.epochs_run,
                               "best_val_dice": result.best_val_dice}
        for name, (x, y, *rest) in tests.items():
            scores = self._score(predict(result.model, x, threshold=self._train_config().threshold), y, *rest)
            prefix = "" if name == "test" else f"{name}_"
            arm.update({f"{prefix}{k}": v for k, v in scores.items()})
        return arm

    def _run_nnunet(self, model_index: int, model_id: str, images: torch.Tensor, masks: torch.Tensor,
                    val: tuple[torch.Tensor, torch.Tensor], tests: dict[str, tuple], ctx: RunContext, label: str,
                    folder: Path, hook: Any = None) -> dict[str, Any]:
        """One arm through nnU-Net v2 (`bench.downstream.nnunet`): trained on (images, masks) with the val split as
        its validation fold, then predicting the val split and each of ``tests``, scored as `_run_arm` scores."""
        from bench.downstream.nnunet import NnUNetConfig, train_and_predict
        from bench.metrics.segmentation import dice_iou

        c = self.config
        if hook is not None:
            from bench.config import ConfigError

            raise ConfigError(f"segmenter {model_id} runs nnunetv2, which trains with its own data loader: the "
                              f"training hook {type(hook).__name__} cannot run in it (set task.nnunet=dynunet)")
        config = NnUNetConfig(trainer=c.nnunet_trainer, epochs=c.nnunet_epochs, iterations_per_epoch=c.nnunet_iterations,
                              checkpoint=c.nnunet_checkpoint)
        predict = {"val": val[0], **{name: t[0] for name, t in tests.items()}}
        advance = ctx.progress(f"{label} {model_id} (nnunetv2)", 1)
        result = train_and_predict(images, masks, val[0], val[1], predict, folder, config, ctx.device,
                                   seed=derive_seed(ctx.seed, 200 + model_index), advance=lambda *_: advance())
        arm: dict[str, Any] = {"best_epoch": result.best_epoch, "epochs": result.epochs,
                               "best_val_dice": float(dice_iou(result.predictions["val"], val[1])[0].mean())}
        for name, (x, y, *rest) in tests.items():
            scores = self._score(result.predictions[name], y, *rest)
            prefix = "" if name == "test" else f"{name}_"
            arm.update({f"{prefix}{k}": v for k, v in scores.items()})
        return arm

    def _real_arm(self, model_index: int, model_id: str, real: tuple[torch.Tensor, torch.Tensor],
                  val: tuple, tests: dict[str, tuple], data: TaskData, ctx: RunContext,
                  fold: int | None = None) -> dict[str, Any]:
        """The real-only arm, cached across methods under a key of everything that determines it (the keys of
        `protocol_left_out_at` only when they differ from that value, so older caches stay valid)."""
        from bench.config import to_dict

        at = self.protocol_left_out_at
        config = {k: v for k, v in to_dict(self.config).items()
                  if k not in self.ARM_FREE_KEYS and not (k in at and v == at[k])}
        identity = {"task": self.id, "version": self.version, "config": config, "splits": data.checksums,
                    "seed": ctx.seed, "model": model_id, "model_index": model_index}
        if fold is not None:
            identity["fold"] = fold
        key = stable_hash(identity, 16)
        path = Path(ctx.cache_dir or ctx.work_dir) / "arms" / f"real-{model_id}-{key}.json"
        label = "real-only" if fold is None else f"real-only fold {fold}"
        if path.exists():
            logger.info("real-only arm of %s: cached (%s)", model_id, path.name)
            note_reuse(ctx.reused, f"{label} arm {model_id}", path)
            return json.loads(path.read_text())
        checkpoint = path.with_suffix(".ckpt")
        arm = self._run_arm(model_index, model_id, *real, val, tests, ctx, label, checkpoint=checkpoint)
        note_computed_here(path)
        atomic_write_text(path, json.dumps(arm))
        checkpoint.unlink(missing_ok=True)
        shutil.rmtree(nnunet_folder(checkpoint), ignore_errors=True)
        return arm

    def _plan(self, data: TaskData, synthetic: Sequence[Sample]) -> list[_Fold]:
        """The train / validation / test sets of each fold (one fold without ``folds``: the dataset's splits)."""
        c = self.config
        size = c.image_size
        with_mm = c.surface_metrics and c.surface_spacing == "meta"
        spacing_of = (lambda samples: pixel_spacings(samples, size)) if with_mm else (lambda samples: None)
        if not c.folds:
            train = [data.splits["train"][i] for i in self.real_indices(data)]
            test = data.splits["test"]
            tests: dict[str, tuple] = {"test": (*stack_pairs(test, size, "test"), spacing_of(test))}
            test_ids = [s.meta.get("id", str(i)) for i, s in enumerate(test)]
            if c.eval_unit == "case":
                volumes = case_volumes(test, tests["test"][2])
                tests["test"] = (*tests["test"], volumes)
                test_ids = [v[0] for v in volumes]
            if "transfer" in data.splits:
                tests["transfer"] = (*stack_pairs(data.splits["transfer"], size, "transfer"),
                                     spacing_of(data.splits["transfer"]))
            return [_Fold(None, stack_pairs(train, size, "train"), stack_pairs(data.splits["val"], size, "val"), tests,
                          test_ids, [s.meta.get("id") for s in train], list(range(len(synthetic))))]
        pool = [s for name in ("train", "val", "test") for s in data.splits[name]]
        images, masks = stack_pairs(pool, size, "labelled samples")
        ids = [str(s.meta.get("id", f"{i}")) for i, s in enumerate(pool)]
        cases = case_keys(pool)
        spacings = spacing_of(pool)
        pool_ids = set(ids)
        folds = []
        for k in range(c.folds) if c.fold is None else (c.fold,):
            fit_idx, val_idx, test_idx = self._fold_split(pool, k)
            fit_ids = {ids[i] for i in fit_idx}
            # a rendering of a test-fold or validation image would leak it into training: only the fold's own
            keep = [i for i, s in enumerate(synthetic)
                    if str(s.meta.get("source_id")) not in pool_ids or str(s.meta.get("source_id")) in fit_ids]
            test_spacings = [spacings[i] for i in test_idx] if spacings else None
            tests = {"test": (images[test_idx], masks[test_idx], test_spacings)}
            test_ids = [ids[i] for i in test_idx]
            if c.eval_unit == "case":
                volumes = case_volumes([pool[i] for i in test_idx], test_spacings)
                tests["test"] = (*tests["test"], volumes)
                test_ids = [v[0] for v in volumes]
            folds.append(_Fold(k, (images[fit_idx], masks[fit_idx]), (images[val_idx], masks[val_idx]), tests,
                               test_ids, [ids[i] for i in fit_idx], keep, len(set(cases))))
        return folds

    def _fold_split(self, pool: Sequence[Sample], k: int) -> tuple[list[int], list[int], list[int]]:
        """Fold ``k``'s (fit, validation, test) indices into the pooled labelled samples."""
        c = self.config
        cases = case_keys(pool)
        train_idx, test_idx = case_folds(cases, c.folds)[k]
        if c.model_selection == "val":
            fit_idx, val_idx = hold_out_cases(cases, train_idx, c.fold_val_fraction, derive_seed(c.subset_seed, 2, k))
        else:  # DiffBoost's code: the checkpoint is chosen on the test fold
            fit_idx, val_idx = list(train_idx), list(test_idx)
        return list(fit_idx), list(val_idx), list(test_idx)

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from bench.downstream.hooks import augmented_arm  # a hook the samples declare (DiffBoost's patch merging)
        from bench.metrics.stats import paired_ttest, relative_gain_or_none

        c = self.config
        size = c.image_size
        syn_all = stack_pairs(synthetic, size, "generated")
        has_syn = len(syn_all[0]) > 0
        folds = self._plan(data, synthetic)
        columns = ("dice", "iou", *(SURFACE_COLUMNS if c.surface_metrics else ()))
        arms_real: dict[str, list[dict[str, Any]]] = {m: [] for m in c.segmenters}
        arms_aug: dict[str, list[dict[str, Any]]] = {m: [] for m in c.segmenters}
        for f in folds:
            keep = torch.as_tensor(f.synthetic, dtype=torch.long)
            syn = (syn_all[0][keep], syn_all[1][keep]) if f.index is not None else syn_all
            samples = [synthetic[i] for i in f.synthetic] if f.index is not None else synthetic
            if f.index is not None and has_syn and not len(syn[0]):
                logger.warning("fold %d: no generated sample is a rendering of its training images; its augmented "
                               "arm is its real-only arm", f.index)
            aug, hook = augmented_arm(f.real, syn, f.real_ids, samples) if len(syn[0]) else (f.real, None)
            tag = "" if f.index is None else f"f{f.index}-"
            for k, model_id in enumerate(c.segmenters):
                real_arm = self._real_arm(k, model_id, f.real, f.val, f.tests, data, ctx, fold=f.index)
                arms_real[model_id].append(real_arm)
                if len(syn[0]):
                    checkpoint = Path(ctx.work_dir) / "checkpoints" / f"augmented-{tag}{k}-{model_id}.pt"
                    label = "augmented" if f.index is None else f"augmented fold {f.index}"
                    arms_aug[model_id].append(self._run_arm(k, model_id, *aug, f.val, f.tests, ctx, label, checkpoint,
                                                            hook=hook))
                else:
                    arms_aug[model_id].append(real_arm)

        def model_values(arms: dict[str, list[dict[str, Any]]], prefix: str = "") -> dict[str, dict[str, float]]:
            return {m: {k: aggregate([a[f"{prefix}{k}"] for a in fold_arms], c.fold_aggregate if c.folds else "pooled")
                        for k in columns} for m, fold_arms in arms.items()}

        per_model, ref_per_model = model_values(arms_aug), model_values(arms_real)
        metrics = {k: float(np.mean([v[k] for v in per_model.values()])) for k in columns}
        higher = {k: k not in ("hd95", "assd") for k in columns}
        comparisons: dict[str, Any] = {
            "reference": "real-only",
            "reference_metrics": {k: float(np.mean([v[k] for v in ref_per_model.values()])) for k in columns},
            "reference_per_model": ref_per_model,
        }
        if c.surface_metrics:
            unit = "mm" if all(f.tests["test"][2] for f in folds) else "pixel"
            comparisons["units"] = {"hd95": unit, "assd": unit}
        transfer = folds[0].tests.get("transfer")
        if transfer is not None:
            key = c.transfer_key
            for mine, arms in ((per_model, arms_aug), (ref_per_model, arms_real)):
                for m, fold_arms in arms.items():
                    mine[m].update({f"{k}[{key}]": float(np.mean(fold_arms[0][f"transfer_{k}"])) for k in ("dice", "iou")})
            for k in ("dice", "iou"):
                metrics[f"{k}[{key}]"] = float(np.mean([v[f"{k}[{key}]"] for v in per_model.values()]))
                comparisons["reference_metrics"][f"{k}[{key}]"] = float(
                    np.mean([v[f"{k}[{key}]"] for v in ref_per_model.values()]))
                higher[f"{k}[{key}]"] = True
        if c.mask_lpips and len(syn_all[0]) > 1:
            from bench.tasks.common import mask_diversity

            key, value = mask_diversity(syn_all[1], c.lpips_trunk, c.weights_dir, c.lpips_pairs, c.subset_seed)
            metrics[key] = value
            higher[key] = True
        if has_syn:
            comparisons["relative_gain"] = {  # None (undefined) where a reference score is 0
                k: relative_gain_or_none({m: per_model[m][k] for m in per_model}, {m: ref_per_model[m][k] for m in per_model})
                for k in ("dice", "iou")}
            comparisons["paired_ttest"] = {  # per-image scores pooled over segmenters (and folds)
                k: paired_ttest(np.concatenate([a[k] for m in c.segmenters for a in arms_aug[m]]),
                                np.concatenate([a[k] for m in c.segmenters for a in arms_real[m]]))
                for k in ("dice", "iou")}
        if c.folds:
            comparisons["folds"] = {
                "k": c.folds, "aggregate": c.fold_aggregate, "model_selection": c.model_selection,
                "cases": folds[0].n_cases, "split": "sklearn KFold(shuffle=False) over sorted case ids",
                "sizes": [{"train": len(f.real[0]), "val": len(f.val[0]), "test": len(f.test_ids),
                           "generated_used": len(f.synthetic)} for f in folds],
                "std": {arm: {m: {k: fold_std([a[k] for a in fold_arms], c.fold_aggregate) for k in columns}
                              for m, fold_arms in arms.items()}
                        for arm, arms in (("real-only", arms_real), ("augmented", arms_aug))},
                "per_fold": {arm: {m: [{k: _nanmean(a[k]) for k in columns} for a in fold_arms]
                                   for m, fold_arms in arms.items()}
                             for arm, arms in (("real-only", arms_real), ("augmented", arms_aug))},
                "generator_fit": (f"on fold {c.fold}'s training cases only (one run per fold)" if c.fold is not None
                                  else "none (a run of all folds refuses to fit a generator); renderings of a "
                                       "fold's test and validation images are not trained on")}
        rows = []
        for arm_name, arms in (("real-only", arms_real), ("augmented", arms_aug)):
            if arm_name == "augmented" and not has_syn:
                continue
            for m, fold_arms in arms.items():
                for f, a in zip(folds, fold_arms):
                    scored = [("test", f.test_ids, "")]
                    if "transfer" in f.tests:
                        t = data.splits["transfer"]
                        scored.append((c.transfer_key, [str(i) for i in t.ids] if hasattr(t, "ids") else
                                       [str(s.meta.get("id", i)) for i, s in enumerate(t)], "transfer_"))
                    for split, ids, prefix in scored:
                        for j, sid in enumerate(ids):
                            row: dict[str, Any] = {"model": m, "arm": arm_name}
                            if f.index is not None:
                                row["fold"] = f.index
                            row.update({"split": split, "id": sid})
                            row.update({k: a[f"{prefix}{k}"][j] for k in columns})
                            rows.append(row)
        artifacts = {}
        if c.grid_size and has_syn:
            grid = save_pair_grid(syn_all[0], syn_all[1], Path(ctx.work_dir) / "samples.png", c.grid_size)
            if grid is not None:
                artifacts["samples"] = str(grid)
        for m in c.segmenters:
            comparisons.setdefault("training", {})[m] = {
                arm: ({k: arms[m][0][k] for k in ("best_epoch", "epochs", "best_val_dice")} if not c.folds else
                      [{k: a[k] for k in ("best_epoch", "epochs", "best_val_dice")} for a in arms[m]])
                for arm, arms in (("real-only", arms_real), ("augmented", arms_aug))}
        remove_checkpoints(ctx.work_dir)
        if c.folds:
            counts = {"labelled": sum(len(f.tests["test"][0]) for f in folds), "cases": folds[0].n_cases,
                      "folds": c.folds, "generated": len(syn_all[0]), "test": sum(len(f.test_ids) for f in folds)}
        else:
            f = folds[0]
            counts = {"real_train": len(f.real[0]), "generated": len(syn_all[0]), "val": len(f.val[0]),
                      "test": len(f.test_ids), **({"transfer": len(f.tests["transfer"][0])} if "transfer" in f.tests else {})}
        return Evaluation(metrics=metrics, higher_is_better=higher, per_model=per_model, comparisons=comparisons,
                          per_sample=rows, counts=counts, artifacts=artifacts)


@dataclass
class _Fold:
    """One train / validation / test assignment (``index`` None: the dataset's own splits)."""

    index: int | None
    real: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    tests: dict[str, tuple]
    test_ids: list[Any]
    real_ids: list[Any]
    synthetic: list[int]
    """Indices of the generated samples this fold may train on."""
    n_cases: int = 0


class _RefusedFitSet(Sequence):
    """A fit set that refuses to be read, with the reason, when no leak-free one exists."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _refuse(self) -> Any:
        from bench.config import ConfigError

        raise ConfigError(self.reason)

    def __len__(self) -> int:
        return self._refuse()

    def __getitem__(self, index: Any) -> Any:
        return self._refuse()


def case_keys(samples: Sequence[Sample]) -> list[str]:
    """Each sample's case: ``meta["case"]`` (slices of one patient), or the sample itself when it has none (derm-mini,
    ISIC: every image is its own case)."""
    out = []
    for i, s in enumerate(samples):
        case = s.meta.get("case")
        out.append(f"case:{case}" if case is not None else f"id:{s.meta.get('id', i)}")
    return out


def case_folds(cases: Sequence[str], k: int) -> list[tuple[list[int], list[int]]]:
    """DiffBoost's case-level folds (B.8 [C]): ``KFold(n_splits=k, shuffle=False)`` over the sorted distinct case
    ids; returns per fold (training sample indices, test sample indices), every sample of a case on one side."""
    from sklearn.model_selection import KFold

    unique = sorted(set(cases))
    if len(unique) < k:
        raise DataError(f"task.folds={k} needs at least {k} cases, the dataset has {len(unique)}")
    out = []
    for _, test_cases in KFold(n_splits=k, shuffle=False).split(unique):
        held = {unique[i] for i in test_cases}
        out.append(([i for i, c in enumerate(cases) if c not in held], [i for i, c in enumerate(cases) if c in held]))
    return out


def case_volumes(samples: Sequence[Sample], spacings: Sequence[tuple[float, float]] | None
                 ) -> list[tuple[str, list[int], tuple[float, float, float] | None]]:
    """The cases of ``samples`` as volumes, in order of first appearance: (case id, the indices of its slices sorted
    by ``meta["z"]`` (else kept in order), its 3D spacing (``meta["slice_thickness"]``, row, col) or None when
    ``spacings`` is None (pixels, z step 1)). DiffBoost's code stacks a case's kept slices the same way (B.8: only
    slices with foreground are kept, by the datasets here as there)."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(case_keys(samples)):
        groups.setdefault(key, []).append(i)
    out = []
    for key, idx in groups.items():
        idx = sorted(idx, key=lambda i: (samples[i].meta.get("z") is None, samples[i].meta.get("z") or 0, i))
        spacing = None
        if spacings is not None:
            thickness = samples[idx[0]].meta.get("slice_thickness")
            if thickness is None and len(idx) > 1:
                raise DataError(f"task.eval_unit=case with spacing: case {key.split(':', 1)[1]} has no "
                                "meta['slice_thickness'] (set task.surface_spacing=pixel)")
            spacing = (float(thickness or 1.0), *spacings[idx[0]])
        out.append((key.split(":", 1)[1], idx, spacing))
    return out


def hold_out_cases(cases: Sequence[str], indices: Sequence[int], fraction: float, seed: int
                   ) -> tuple[list[int], list[int]]:
    """Split ``indices`` into (fit, validation) by case: ``round(fraction * n_cases)`` cases (at least 1, at most
    n_cases - 1) drawn with ``seed`` go to validation."""
    unique = sorted({cases[i] for i in indices})
    if len(unique) < 2:
        raise DataError("task.model_selection=val needs at least 2 cases in a fold's training part")
    n_val = min(max(1, int(round(fraction * len(unique)))), len(unique) - 1)
    held = {unique[i] for i in np.random.default_rng(seed).choice(len(unique), size=n_val, replace=False)}
    return [i for i in indices if cases[i] not in held], [i for i in indices if cases[i] in held]


def pixel_spacings(samples: Sequence[Sample], size: int) -> list[tuple[float, float]] | None:
    """Per sample the (row, col) pixel size in mm at the segmenters' ``size``: ``meta["spacing"]`` (at the delivered
    image size) times delivered side / ``size``; None when a sample has no spacing (distances are then in pixels)."""
    out = []
    for s in samples:
        spacing = s.meta.get("spacing")
        if spacing is None:
            return None
        if len(spacing) != 2:
            raise DataError(f"sample {s.meta.get('id')}: meta['spacing'] must be (row, col) mm per pixel, got {spacing}")
        h, w = s.image.shape[-2:]
        out.append((float(spacing[0]) * h / size, float(spacing[1]) * w / size))
    return out


def _nanmean(values: Sequence[float]) -> float:
    """Mean leaving NaN out (an HD95 with both masks empty); NaN when nothing is left."""
    a = np.asarray(values, dtype=np.float64)
    if not np.isnan(a).any():
        return float(np.mean(a))
    return float(np.mean(a[~np.isnan(a)])) if (~np.isnan(a)).any() else float("nan")


def aggregate(per_fold: Sequence[Sequence[float]], how: str) -> float:
    """A model's value from its per-fold per-image scores: ``mean-of-folds`` (DiffBoost B.9: the mean of the fold
    means) or ``pooled`` (the mean over all images; one fold: its mean)."""
    if how == "mean-of-folds":
        return _nanmean([_nanmean(v) for v in per_fold])
    if how == "pooled":
        return _nanmean([x for v in per_fold for x in v])
    raise ValueError(f"unknown fold aggregation '{how}'; valid: mean-of-folds, pooled")


def fold_std(per_fold: Sequence[Sequence[float]], how: str) -> float:
    """The spread matching `aggregate`: ``mean-of-folds``: sqrt(mean of the fold variances) (DiffBoost's
    ``utils/summary.py``), ``pooled``: the std over all images (population std, NaN left out)."""
    def var(v: Sequence[float]) -> float:
        a = np.asarray(v, dtype=np.float64)
        a = a[~np.isnan(a)]
        return float(np.var(a)) if len(a) else float("nan")

    if how == "mean-of-folds":
        return float(np.sqrt(_nanmean([var(v) for v in per_fold])))
    return float(np.sqrt(var([x for v in per_fold for x in v])))

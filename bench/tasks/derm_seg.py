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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.data.validate import verify_samples
from bench.interface import Condition, RunContext, Sample, derive_seed
from bench.store import atomic_write_text, stable_hash
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import (generator_view, open_dataset, procedural_beside_real, prompt_form, remove_checkpoints,
                                resolution_text, save_pair_grid, stack_pairs, training_text)

logger = logging.getLogger(__name__)


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
        from bench.downstream import SEGMENTERS

        for name in self.segmenters:
            if name not in SEGMENTERS:
                raise ConfigError(f"task.segmenters: {SEGMENTERS.unknown_message(name)}")


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
                                                         not_recomputed=("dice[*", "iou[*", "lpips_diversity*"))
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
        view = generator_view(c.dataset, c.dataset_options, c.image_size, c.generator_image_size, ctx,
                              like=splits["train"])
        if view is not None:
            extra["generator_train"] = view
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
                **({"generator_image_size": c.generator_image_size} if c.generator_image_size else {})}

    def recorded_config(self, config: dict[str, Any], work_dir: Path) -> dict[str, Any]:
        source = config.get("mask_source")
        return {**config, "mask_source": portable_mask_source(source, work_dir)} if source else config

    def generation_identity(self) -> dict[str, Any]:
        """Conditions depend on the fit set and the conditioning only: S_1k and S_2.5k share one generation."""
        c = self.config
        return {**self.fit_identity(), "n_generate": c.n_generate, "conditioning": c.conditioning,
                "mask_source": c.mask_source}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The training pairs (or the S_n subset) at the generator's resolution."""
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
        pool = self.fit_set(data)
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
                              loss=c.loss, hflip=c.hflip)

    def _run_arm(self, model_index: int, model_id: str, images: torch.Tensor, masks: torch.Tensor,
                 val: tuple[torch.Tensor, torch.Tensor], tests: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 ctx: RunContext, label: str, checkpoint: Path | None = None, hook: Any = None) -> dict[str, Any]:
        """Train one segmenter on (images, masks) and score it. ``checkpoint``: its per-epoch state file (default
        ``<work dir>/checkpoints/<label>-<index>-<model>.pt``), from which a killed training resumes (the evaluate
        stage's folder is the same when the run is started again); `remove_checkpoints` deletes them at the end."""
        from bench.downstream import SEGMENTERS
        from bench.downstream.trainer import predict, train_segmenter
        from bench.metrics.segmentation import dice_iou

        c = self.config
        # Same initialisation for the real and the augmented arm of one model: a paired comparison.
        torch.manual_seed(derive_seed(ctx.seed, 100 + model_index))
        factory = SEGMENTERS.get(model_id)
        # a segmenter with pretrained parts (xbound-former-pvt) reads them from the task's weights dir
        extra = {"weights_dir": c.weights_dir} if "weights_dir" in inspect.signature(factory).parameters else {}
        model = factory(in_channels=images.shape[1], base=c.seg_base, depth=c.seg_depth, **extra)
        advance = ctx.progress(f"{label} {model_id}", c.max_epochs)
        checkpoint = checkpoint or Path(ctx.work_dir) / "checkpoints" / f"{label}-{model_index}-{model_id}.pt"
        result = train_segmenter(model, images, masks, val[0], val[1], self._train_config(),
                                 seed=derive_seed(ctx.seed, 200 + model_index), advance=advance, checkpoint=checkpoint,
                                 hook=hook)
        arm: dict[str, Any] = {"best_epoch": result.best_epoch, "epochs": result.epochs_run,
                               "best_val_dice": result.best_val_dice}
        for name, (x, y) in tests.items():
            dice, iou = dice_iou(predict(result.model, x, threshold=self._train_config().threshold), y)
            prefix = "" if name == "test" else f"{name}_"
            arm[f"{prefix}dice"], arm[f"{prefix}iou"] = dice.tolist(), iou.tolist()
        return arm

    def _real_arm(self, model_index: int, model_id: str, real: tuple[torch.Tensor, torch.Tensor],
                  val: tuple, tests: dict[str, tuple], data: TaskData, ctx: RunContext) -> dict[str, Any]:
        """The real-only arm, cached across methods under a key of everything that determines it."""
        from bench.config import to_dict

        config = {k: v for k, v in to_dict(self.config).items() if k not in self.ARM_FREE_KEYS}
        key = stable_hash({"task": self.id, "version": self.version, "config": config, "splits": data.checksums,
                           "seed": ctx.seed, "model": model_id, "model_index": model_index}, 16)
        path = Path(ctx.cache_dir or ctx.work_dir) / "arms" / f"real-{model_id}-{key}.json"
        if path.exists():
            logger.info("real-only arm of %s: cached (%s)", model_id, path.name)
            return json.loads(path.read_text())
        checkpoint = path.with_suffix(".ckpt")
        arm = self._run_arm(model_index, model_id, *real, val, tests, ctx, "real-only", checkpoint=checkpoint)
        atomic_write_text(path, json.dumps(arm))
        checkpoint.unlink(missing_ok=True)
        return arm

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from bench.metrics.stats import paired_ttest, relative_gain_or_none

        c = self.config
        size = c.image_size
        real = stack_pairs([data.splits["train"][i] for i in self.real_indices(data)], size, "train")
        val = stack_pairs(data.splits["val"], size, "val")
        test = stack_pairs(data.splits["test"], size, "test")
        tests = {"test": test}
        if "transfer" in data.splits:
            tests["transfer"] = stack_pairs(data.splits["transfer"], size, "transfer")
        syn = stack_pairs(synthetic, size, "generated")
        test_ids = [s.meta.get("id", str(i)) for i, s in enumerate(data.splits["test"])]

        arms_real, arms_aug = {}, {}
        from bench.downstream.hooks import augmented_arm  # a hook the samples declare (DiffBoost's patch merging)

        aug, hook = augmented_arm(real, syn, [data.splits["train"][i].meta.get("id") for i in self.real_indices(data)],
                                  synthetic)
        for k, model_id in enumerate(c.segmenters):
            arms_real[model_id] = self._real_arm(k, model_id, real, val, tests, data, ctx)
            if len(syn[0]):
                checkpoint = Path(ctx.work_dir) / "checkpoints" / f"augmented-{k}-{model_id}.pt"
                arms_aug[model_id] = self._run_arm(k, model_id, *aug, val, tests, ctx, "augmented", checkpoint,
                                                   hook=hook)
            else:
                arms_aug[model_id] = arms_real[model_id]

        per_model = {m: {"dice": float(np.mean(a["dice"])), "iou": float(np.mean(a["iou"]))} for m, a in arms_aug.items()}
        ref_per_model = {m: {"dice": float(np.mean(a["dice"])), "iou": float(np.mean(a["iou"]))} for m, a in arms_real.items()}
        metrics = {k: float(np.mean([v[k] for v in per_model.values()])) for k in ("dice", "iou")}
        higher = {"dice": True, "iou": True}
        comparisons: dict[str, Any] = {
            "reference": "real-only",
            "reference_metrics": {k: float(np.mean([v[k] for v in ref_per_model.values()])) for k in ("dice", "iou")},
            "reference_per_model": ref_per_model,
        }
        if "transfer" in tests:
            key = c.transfer_key
            for m, a in arms_aug.items():
                per_model[m].update({f"{k}[{key}]": float(np.mean(a[f"transfer_{k}"])) for k in ("dice", "iou")})
            for m, a in arms_real.items():
                ref_per_model[m].update({f"{k}[{key}]": float(np.mean(a[f"transfer_{k}"])) for k in ("dice", "iou")})
            for k in ("dice", "iou"):
                metrics[f"{k}[{key}]"] = float(np.mean([v[f"{k}[{key}]"] for v in per_model.values()]))
                comparisons["reference_metrics"][f"{k}[{key}]"] = float(
                    np.mean([v[f"{k}[{key}]"] for v in ref_per_model.values()]))
                higher[f"{k}[{key}]"] = True
        if c.mask_lpips and len(syn[0]) > 1:
            from bench.tasks.common import mask_diversity

            key, value = mask_diversity(syn[1], c.lpips_trunk, c.weights_dir, c.lpips_pairs, c.subset_seed)
            metrics[key] = value
            higher[key] = True
        if len(syn[0]):
            comparisons["relative_gain"] = {  # None (undefined) where a reference score is 0
                k: relative_gain_or_none({m: per_model[m][k] for m in per_model}, {m: ref_per_model[m][k] for m in per_model})
                for k in ("dice", "iou")}
            comparisons["paired_ttest"] = {  # per-image scores pooled over segmenters (thesis: p = 6.64e-29)
                k: paired_ttest(np.concatenate([arms_aug[m][k] for m in c.segmenters]),
                                np.concatenate([arms_real[m][k] for m in c.segmenters]))
                for k in ("dice", "iou")}
        scored = [("test", test_ids, "")]
        if "transfer" in tests:
            transfer = data.splits["transfer"]
            transfer_ids = [str(i) for i in transfer.ids] if hasattr(transfer, "ids") else \
                [str(s.meta.get("id", i)) for i, s in enumerate(transfer)]
            scored.append((c.transfer_key, transfer_ids, "transfer_"))
        rows = [{"model": m, "arm": arm_name, "split": split, "id": sid, "dice": d, "iou": j}
                for arm_name, arms in (("real-only", arms_real), ("augmented", arms_aug)) if arm_name == "real-only" or len(syn[0])
                for m, a in arms.items() for split, ids, prefix in scored
                for sid, d, j in zip(ids, a[f"{prefix}dice"], a[f"{prefix}iou"])]
        artifacts = {}
        if c.grid_size and len(syn[0]):
            grid = save_pair_grid(syn[0], syn[1], Path(ctx.work_dir) / "samples.png", c.grid_size)
            if grid is not None:
                artifacts["samples"] = str(grid)
        for m in c.segmenters:
            comparisons.setdefault("training", {})[m] = {
                arm: {k: arms[m][k] for k in ("best_epoch", "epochs", "best_val_dice")}
                for arm, arms in (("real-only", arms_real), ("augmented", arms_aug))}
        remove_checkpoints(ctx.work_dir)
        return Evaluation(
            metrics=metrics, higher_is_better=higher, per_model=per_model,
            comparisons=comparisons, per_sample=rows,
            counts={"real_train": len(real[0]), "generated": len(syn[0]), "val": len(val[0]), "test": len(test[0]),
                    **({"transfer": len(tests["transfer"][0])} if "transfer" in tests else {})},
            artifacts=artifacts)

"""derm-quality: general generation quality of dermoscopic images (thesis ch. 4 section 4.4.2, Table 4.1).

The generator is fitted on the training split (ISIC 2018 Task 1 train, text conditioning only) and asked for
``n_generate`` images with the DermPrompt prefix as the given prompt. Scores, all at ``image_size`` (thesis:
256 px, real test images squashed to the same size):

* ``fd[<extractor>]``: Frechet distance to the test images (``fd[inception-v3]`` is FID; the mini profile uses
  mini-clip's image tower, ``fd[mini-clip]``, never called FID);
* MS-SSIM over index-aligned (generated_i, real_i) pairs (a random pairing [I]; ``ms_ssim[win=K]`` below 161 px);
* LPIPS diversity: mean LPIPS over seeded random distinct pairs of generated images (AlexNet trunk from its
  ImageNet file; ``lpips_diversity[alex-random]`` when the trunk is random, a plumbing-only proxy).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.interface import Capabilities, Condition, RunContext, Sample, derive_seed
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import (generator_view, open_dataset, prompt_form, resize_image, resolution_text, save_pair_grid,
                                training_text, verify_read_splits)

logger = logging.getLogger(__name__)

PREFIX_PROMPT = "An image of <lesion> on <skin>."


@dataclass(frozen=True)
class DermQualityConfig:
    """Protocol of derm-quality (thesis section 4.4.2; [I] marks choices the thesis leaves open)."""

    dataset: str = "isic2018-task1"
    """Dataset id: generators fit on its train split, real references are its test split (thesis)."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset."""
    image_size: int = 256
    """Side at which every image is scored (thesis: 256)."""
    generator_image_size: int | None = None
    """Side at which generators get the training images and references, read again from the original files
    (paper: 512, thesis App. "for DM-based models, input images are resized to 512x512"); None: ``image_size``."""
    n_generate: int = 1000
    """Images generated (thesis: 1000)."""
    prompt: str = PREFIX_PROMPT
    """Prompt given with every condition (thesis: the DermPrompt prefix; methods may replace it, e.g. DiDGen's
    DermPrompt setting)."""
    extractor: str = "inception-v3"
    """Feature extractor of the Frechet distance (``inception-v3`` = FID; ``mini-clip`` in the mini profile)."""
    weights_dir: str | None = None
    """Folder with the extractor / LPIPS files (else ``$BENCH_WEIGHTS``)."""
    ms_ssim_window: int = 11
    """MS-SSIM Gaussian window (11 standard; 3 for 64 px images)."""
    lpips_trunk: Literal["imagenet", "random"] = "imagenet"
    """LPIPS AlexNet trunk: ImageNet weights from a local file (thesis) or a seeded random trunk (proxy)."""
    lpips_pairs: int = 1000
    """Random distinct pairs for LPIPS diversity [I: 1000, fixed seed]."""
    pair_seed: int = 0
    """Seed of the LPIPS pairs (part of the protocol)."""
    grid_size: int = 16
    """Generated images kept as a PNG grid beside the record (0: none)."""
    conditioning: Literal["none", "masks"] = "none"
    """What each condition carries besides the prompt and a training image as reference: nothing (thesis Table
    4.1: unconditioned generation) or also that training image's mask, so that mask-to-image methods (ControlNet)
    can be scored too; mask-following methods (DiDGen) are then layout-guided, a different setting."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.n_generate < 2:
            raise ConfigError(f"task.n_generate must be >= 2 (FD and LPIPS need pairs), got {self.n_generate}")
        if self.image_size <= (self.ms_ssim_window - 1) * 16:
            raise ConfigError(f"task.ms_ssim_window={self.ms_ssim_window} needs task.image_size > "
                              f"{(self.ms_ssim_window - 1) * 16}, got {self.image_size}")


class DermQualityTask(Task):
    """General generation quality (thesis Table 4.1)."""

    id: ClassVar[str] = "derm-quality"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "FD and MS-SSIM against the test images, LPIPS diversity of the generated images"
    needs: ClassVar[frozenset[str]] = frozenset({"image"})
    main_metric: ClassVar[str] = "fd"
    # MS-SSIM and LPIPS diversity are means of per-pair rows (metric, id, value); FD recomputes from the two sets'
    # sufficient statistics in the fd_stats artefact
    sample_scores: ClassVar[SampleScores] = SampleScores((), metric_rows=("ms_ssim*", "lpips*"), fd_stats="fd_stats")
    Config = DermQualityConfig
    generator_inputs: ClassVar[frozenset[str]] = frozenset({"generator_image_size"})
    inputs_left_out_at: ClassVar[dict[str, Any]] = {"generator_image_size": None}

    def given(self) -> frozenset[str]:
        return frozenset({"prompt", "reference"} | ({"mask"} if self.config.conditioning == "masks" else set()))

    def incompatibility(self, capabilities: Capabilities) -> str | None:
        why = super().incompatibility(capabilities)
        needs_mask = "mask" in capabilities.requires or any("mask" in a for a in capabilities.requires_one_of)
        if why and needs_mask and self.config.conditioning != "masks":
            why += " (set task.conditioning=masks to give each reference's mask)"
        return why

    def load(self, ctx: RunContext) -> TaskData:
        c = self.config
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        splits = {name: ds.load(name) for name in ("train", "test")}
        for name, samples in splits.items():
            if len(samples) < 2:
                raise DataError(f"dataset '{c.dataset}' split '{name}' has {len(samples)} samples; need at least 2")
        verify_read_splits(ds, splits)
        extra: dict[str, Any] = {}
        view = generator_view(c.dataset, c.dataset_options, c.image_size, c.generator_image_size, ctx,
                              like=splits["train"])
        if view is not None:
            extra["generator_train"] = view
        return TaskData(c.dataset, splits, {name: ds.split_checksum(name) for name in splits}, extra)

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size,
                **({"generator_image_size": c.generator_image_size} if c.generator_image_size else {})}

    def describe_generator_inputs(self, method_id: str, method_config: Any) -> list[dict[str, str]]:
        c = self.config
        resolution = resolution_text(c.generator_image_size, c.image_size, method_config)
        given = "prompt '" + c.prompt + "'"
        rows = [{"input": "fit set", "resolution": resolution, "source": f"{c.dataset} train images, unlabelled",
                 "prompt": training_text(method_config)}]
        what = "a training image as reference" + (" + its mask" if c.conditioning == "masks" else "")
        rows.append({"input": f"conditions x{c.n_generate}", "resolution": resolution, "source": f"{given}; {what}",
                     "prompt": prompt_form(method_config, given=given)})
        return rows

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The training images without diagnosis labels: Experiment 1 trains every generator on ISIC 2018 Task 1,
        which has none (a labelled dataset such as derm-mini would otherwise make per-class GANs split by class)."""
        import dataclasses

        train = data.extra.get("generator_train", data.splits["train"])
        unlabelled = lambda s: dataclasses.replace(s, label=None)  # noqa: E731
        return train.map(unlabelled) if hasattr(train, "map") else [unlabelled(s) for s in train]

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        # Text-to-image methods get the prompt; image-prompted ones (IP-Adapter) a training image, in a seeded
        # order that cycles through the split. The runner drops the fields a method does not accept.
        train = data.extra.get("generator_train", data.splits["train"])
        order = np.random.default_rng(derive_seed(0, 13)).permutation(len(train))
        out = []
        for i in range(self.config.n_generate):
            s = train[int(order[i % len(train)])]
            mask = s.mask if self.config.conditioning == "masks" else None
            out.append(Condition(prompt=self.config.prompt, reference=s.image, mask=mask,
                                 meta={"index": i, "source_id": s.meta.get("id")}))
        return out

    def _stack(self, samples: Sequence[Sample]) -> torch.Tensor:
        size = self.config.image_size
        return torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1), size)
                            for s in samples])

    def _extractor(self) -> Any:
        from bench.tasks.common import load_fd_extractor

        return load_fd_extractor(self.config.extractor, self.config.weights_dir)

    def _lpips(self) -> tuple[Any, str]:
        from bench.tasks.common import load_lpips_trunk, metric_key

        model, suffix = load_lpips_trunk(self.config.lpips_trunk, self.config.weights_dir, self.config.pair_seed)
        return model, metric_key("lpips_diversity", suffix)

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from bench.metrics.image import FrechetDistance, lpips_pair_scores, ms_ssim, ms_ssim_key, save_fd_stats

        c = self.config
        comparisons: dict[str, Any] = {}
        if len(synthetic) == 0:
            # real-only: the real-data reference row, scoring real training images as if generated.
            train = data.splits["train"]
            synthetic = [train[i] for i in range(min(c.n_generate, len(train)))]
            comparisons["scored_set"] = f"{len(synthetic)} real training images (real-data reference; nothing generated)"
        if len(synthetic) < 2:
            raise ValueError(f"derm-quality needs at least 2 generated images, got {len(synthetic)}")
        real = self._stack(data.splits["test"])
        fake = self._stack(synthetic)
        fd = FrechetDistance(self._extractor(), c.extractor)
        fd.update(real, real=True)
        fd.update(fake, real=False)
        metrics = dict(fd.compute())
        work = Path(ctx.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        artifacts = {"fd_stats": str(save_fd_stats(work / "fd_stats.npz", fd.real, fd.fake))}
        n_pairs = min(len(real), len(fake))
        ms = ms_ssim(fake[:n_pairs], real[:n_pairs], data_range=1.0, win_size=c.ms_ssim_window).double()
        ms_key = ms_ssim_key(c.ms_ssim_window)
        metrics[ms_key] = float(ms.mean())
        model, key = self._lpips()
        pairs, lp = lpips_pair_scores(model, fake, n_pairs=c.lpips_pairs, seed=c.pair_seed)
        metrics[key] = float(lp.double().mean())
        test = data.splits["test"]
        real_ids = [str(i) for i in test.ids] if hasattr(test, "ids") else [str(s.meta.get("id", i)) for i, s in enumerate(test)]
        rows = [{"metric": ms_key, "id": f"g{i}|{real_ids[i]}", "value": float(v)} for i, v in enumerate(ms.tolist())]
        rows += [{"metric": key, "id": f"g{a}|g{b}", "value": float(v)} for (a, b), v in zip(pairs.tolist(), lp.double().tolist())]
        higher = {k: not k.startswith("fd[") for k in metrics}
        if c.grid_size:
            grid = save_pair_grid(fake[:c.grid_size], None, Path(ctx.work_dir) / "samples.png", c.grid_size)
            if grid is not None:
                artifacts["samples"] = str(grid)
        return Evaluation(metrics=metrics, higher_is_better=higher, comparisons=comparisons, per_sample=rows,
                          counts={"generated": 0 if comparisons else len(fake), "scored": len(fake), "real_reference": len(real), "ms_ssim_pairs": n_pairs},
                          artifacts=artifacts)

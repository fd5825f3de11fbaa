"""radimagenet-synthesis: reconstruct an image from its edge map (DiffBoost Table I, spec B.4 / B.10).

DiffBoost's Table I compares Pix2Pix with DiffBoost's pretrained (not fine-tuned) ControlNet on RadImageNet:
each test image is turned into its edge map, the method generates one image from it, and the reconstruction is
scored against the original with MAE, MSE, RMSE, SSIM and MS-SSIM, all at data range 0-1 ("DATA RANGE IS BETWEEN
0-1 FOR COMPUTATION"), mean (and std) over images.

* Data: ``dataset``'s train split is the fit set (the pretraining data: Pix2Pix trains on its (edge, image) pairs,
  DiffBoost pretrains on it), its test split is scored. Paper: ``radimagenet`` from ``--data-root`` (official CSV
  splits, `bench.data.radimagenet`). Mini: ``pretrain-mix-mini``, the worlds DiffBoost's mini profile pretrains on
  (`bench.data.pretrain_mix`); its test split is rendered from other ``(split, index)`` seeds of the same worlds,
  so no scored image was trained on.
* Edges: the task extracts them itself with `bench.diffusion.edges.image_edges` (the extractor DiffBoost uses;
  ``edge_detector``: ``hed`` in the paper profile, from the local ``hed_weights`` file; ``canny`` with sigma
  ``edge_sigma`` in mini, as DiffBoost's mini config) at ``edge_size`` (mini: 32, mini-sd's side, where DiffBoost
  pretrains), and gives each test image's map as ``Condition.edges`` (3 equal channels in [0, 1]) with the image's
  prompt; the original image is never given. The fit samples carry their edge map in ``meta["edges"]``; every
  condition's and fit sample's ``meta["edge_detector"]`` names the extractor.
* Scores: each generated image is resized (bilinear, antialiased) to ``image_size`` and compared with the original
  at that size, on three channels (grey images replicated; the fit images are given so too): ``mae``, ``mse`` (torchmetrics), ``rmse`` = sqrt of the image's MSE (per image,
  then averaged, as Table I's std over images implies), ``ssim[range=1]`` and MS-SSIM (pytorch-msssim, Gaussian
  window 11, sigma 1.5). MS-SSIM's five scales need a side above ``(ms_ssim_window - 1) * 16`` px: the paper profile
  (256 px) uses the standard window 11 (key ``ms_ssim``); the mini profile (64 px) a window of 3, key
  ``ms_ssim[win=3]`` (``ms_ssim_window``: the five scales and their weights stay the standard ones), as
  derm-quality's mini MS-SSIM. Per-image scores are written as (metric, id, value) rows, so ``bench submit``
  recomputes every headline mean; the std over images is in ``comparisons.std_over_images``.
* Controls: ``noise`` (random fields, edge map ignored) gives the floor; the ceiling needs no run (the original
  itself: errors 0, SSIM and MS-SSIM 1), and no real-only arm exists (it would score the originals).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.interface import Condition, RunContext, Sample, derive_seed
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import open_dataset, resize_image, verify_read_splits

logger = logging.getLogger(__name__)

#: lower is better for these; SSIM and MS-SSIM higher
ERROR_METRICS = ("mae", "mse", "rmse")


@dataclass(frozen=True)
class RadImageNetSynthesisConfig:
    """Protocol of radimagenet-synthesis (DiffBoost Table I; [O] marks choices the paper leaves open)."""

    dataset: str = "radimagenet"
    """Dataset id: the fit set is its train split, the scored images its test split."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset."""
    image_size: int = 256
    """Side at which originals and reconstructions are compared (DiffBoost's code pretrains and samples at 256)."""
    edge_size: int | None = None
    """Side at which the edge maps (and the fit images) are made and handed to the generator; None: ``image_size``
    (mini: 32, mini-sd's side, the size DiffBoost's mini pretraining extracts its edges at)."""
    edge_detector: Literal["hed", "canny", "sobel"] = "hed"
    """Edge extractor, DiffBoost's (`bench.diffusion.edges`): HED (paper, B.4), canny (mini), sobel."""
    edge_sigma: float = 2.0
    """Canny's Gaussian sigma (mini: 1.0, as DiffBoost's mini config)."""
    hed_weights: str | None = None
    """With ``edge_detector: hed``: the local ``network-bsds500.pth`` (required when the run loads its data)."""
    n_test: int | None = None
    """Test images scored: None = the whole test split (Table I's count is not stated [O]); N = a seeded subset."""
    n_fit: int | None = None
    """Fit-set size: None = the whole train split; N = a seeded subset (Table I does not say on how much of
    RadImageNet Pix2Pix was trained [O]; its 1.2 M training images are many GPU-days at the paper's batch 1)."""
    subset_seed: int = 0
    """Seed of the ``n_test`` and ``n_fit`` subsets."""
    ms_ssim_window: int = 11
    """MS-SSIM Gaussian window: 11 (standard; sides > 160 px) or smaller for small images (mini: 3 at 64 px, key
    ``ms_ssim[win=3]``)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.image_size < 8 or (self.edge_size is not None and self.edge_size < 8):
            raise ConfigError(f"task.image_size and task.edge_size must be >= 8, got {self.image_size}, {self.edge_size}")
        if self.image_size <= (self.ms_ssim_window - 1) * 16:
            raise ConfigError(f"task.ms_ssim_window={self.ms_ssim_window} needs task.image_size > "
                              f"{(self.ms_ssim_window - 1) * 16} (MS-SSIM's 5 scales), got {self.image_size}; "
                              "set a smaller task.ms_ssim_window (3 at 64 px)")
        if self.ms_ssim_window < 1 or self.ms_ssim_window % 2 == 0:
            raise ConfigError(f"task.ms_ssim_window must be odd and >= 1, got {self.ms_ssim_window}")
        if self.n_test is not None and self.n_test < 2:
            raise ConfigError(f"task.n_test must be >= 2 or null, got {self.n_test}")
        if self.n_fit is not None and self.n_fit < 1:
            raise ConfigError(f"task.n_fit must be >= 1 or null, got {self.n_fit}")


class RadImageNetSynthesisTask(Task):
    """Edge map -> image reconstruction quality (DiffBoost Table I)."""

    id: ClassVar[str] = "radimagenet-synthesis"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "reconstruct test images from their edge maps: MAE, MSE, RMSE, SSIM, MS-SSIM (0-1)"
    needs: ClassVar[frozenset[str]] = frozenset({"image"})
    main_metric: ClassVar[str] = "mae"
    has_real_only_arm: ClassVar[bool] = False  # a real-only "reconstruction" would be the originals themselves
    sample_scores: ClassVar[SampleScores] = SampleScores((), metric_rows=("mae", "mse", "rmse", "ssim[*", "ms_ssim*"))
    Config = RadImageNetSynthesisConfig

    def fit_gives(self) -> frozenset[str]:
        return frozenset()  # images and their edge maps

    def given(self) -> frozenset[str]:
        return frozenset({"edges", "prompt"})

    def must_follow(self) -> frozenset[str]:
        return frozenset({"edges"})

    # -- data --------------------------------------------------------------------------------------
    def _edge_side(self) -> int:
        return self.config.edge_size or self.config.image_size

    def load(self, ctx: RunContext) -> TaskData:
        from pathlib import Path

        c = self.config
        # checked here, not in the config: the paper profile's own settings name no local file
        if c.edge_detector == "hed" and not c.hed_weights:
            raise DataError("task.edge_detector=hed needs task.hed_weights (the local network-bsds500.pth); "
                            "or set task.edge_detector=canny")
        if c.edge_detector == "hed" and not Path(c.hed_weights).expanduser().is_file():
            raise DataError(f"task.hed_weights={c.hed_weights}: no such file (sniklaus' network-bsds500.pth)")
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        test = ds.load("test")
        if len(test) < 2:
            raise DataError(f"dataset '{c.dataset}' split 'test' has {len(test)} samples; need at least 2")
        test = _seeded_subset(test, c.n_test, derive_seed(c.subset_seed, 29))
        verify_read_splits(ds, {"test": test})  # the fit split is read lazily (RadImageNet's is 1.2 M files)
        edge_ds = ds if self._edge_side() == c.image_size else open_dataset(c.dataset, c.dataset_options,
                                                                            self._edge_side(), ctx)
        train = edge_ds.load("train")
        if len(train) < 1:
            raise DataError(f"dataset '{c.dataset}' split 'train' is empty: nothing to fit on")
        train = _seeded_subset(train, c.n_fit, derive_seed(c.subset_seed, 31))
        edge_test = edge_ds.load("test")
        if len(edge_test) != len(test):  # the same n_test images at the edge side
            position = {sid: i for i, sid in enumerate(edge_test.ids)}
            edge_test = edge_test.subset([position[sid] for sid in test.ids])
        checksums = {"train": ds.split_checksum("train"), "test": ds.split_checksum("test")}
        return TaskData(c.dataset, {"train": train, "test": test}, checksums, {"edge_test": edge_test})

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "edge_size": self._edge_side(),
                "edges": [c.edge_detector, c.edge_sigma, c.hed_weights],
                **({"n_fit": c.n_fit, "subset_seed": c.subset_seed} if c.n_fit is not None else {})}

    def _edges(self) -> Any:
        """``image -> (3, H, W) edge map`` with this config's extractor (HED loaded once)."""
        from bench.diffusion.edges import edge_map

        c = self.config
        hed = None
        if c.edge_detector == "hed":
            from bench.diffusion.hed import load_hed

            hed = load_hed(c.hed_weights)
        return lambda image: edge_map(image, c.edge_detector, c.edge_sigma, hed)

    def _edge_meta(self) -> dict[str, Any]:
        c = self.config
        return {"edge_detector": c.edge_detector, "edge_sigma": c.edge_sigma, "edge_size": self._edge_side()}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The train split at ``edge_size``, each sample with its edge map in ``meta["edges"]`` (computed on access)."""
        edges, info = self._edges(), self._edge_meta()

        def with_edges(s: Sample) -> Sample:  # RGB images (grey ones replicated, as they are scored)
            return replace(s, image=_rgb(s.image), label=None, meta={**s.meta, **info, "edges": edges(s.image)})

        train = data.splits["train"]
        return train.map(with_edges) if hasattr(train, "map") else [with_edges(s) for s in train]

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        edges, info = self._edges(), self._edge_meta()
        out = []
        for i, s in enumerate(data.extra["edge_test"]):
            out.append(Condition(edges=edges(s.image), prompt=s.prompt,
                                 meta={"index": i, "source_id": s.meta.get("id"), **info}))
        return out

    def describe_generator_inputs(self, method_id: str, method_config: Any) -> list[dict[str, str]]:
        c = self.config
        side = f"{self._edge_side()} px"
        return [{"input": "fit set", "resolution": side,
                 "source": f"{c.dataset} train images with their {c.edge_detector} edge maps", "prompt": "dataset prompt"},
                {"input": f"conditions x{c.n_test or 'test split'}", "resolution": side,
                 "source": f"{c.edge_detector} edge map of each {c.dataset} test image (the image itself is not given)",
                 "prompt": "dataset prompt"}]

    # -- scores ------------------------------------------------------------------------------------
    def _stack(self, samples: Sequence[Sample]) -> torch.Tensor:
        return torch.stack([resize_image(_rgb(s.image), self.config.image_size) for s in samples]).float()

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        test = data.splits["test"]
        if len(synthetic) != len(test):
            raise ValueError(f"radimagenet-synthesis scores one reconstruction per test image: got {len(synthetic)} "
                             f"for {len(test)}")
        real = self._stack(test)
        fake = self._stack(synthetic)
        scores = reconstruction_scores(fake, real, self.config.ms_ssim_window)
        ids = [str(i) for i in test.ids] if hasattr(test, "ids") else [str(s.meta.get("id", i)) for i, s in enumerate(test)]
        rows = [{"metric": key, "id": ids[i], "value": float(v)} for key, values in scores.items()
                for i, v in enumerate(values.tolist())]
        metrics = {key: float(values.mean()) for key, values in scores.items()}
        std = {key: float(values.std(ddof=1)) if len(values) > 1 else 0.0 for key, values in scores.items()}
        higher = {key: key not in ERROR_METRICS for key in metrics}
        c = self.config
        comparisons = {"std_over_images": std, "edges": {**self._edge_meta(), "hed_weights": c.hed_weights},
                       "scored_at": c.image_size, "data_range": 1.0}
        return Evaluation(metrics=metrics, higher_is_better=higher, comparisons=comparisons, per_sample=rows,
                          counts={"generated": len(fake), "test": len(real)})


def _seeded_subset(samples: Any, n: int | None, seed: int) -> Any:
    """``n`` samples drawn without replacement by ``seed``, in split order (all of them when ``n`` is None or not
    smaller than the split)."""
    if n is None or n >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), n, replace=False))
    return samples.subset([int(i) for i in keep])


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """(1 or 3, H, W) -> (3, H, W): grey images (cxr-mini, RadImageNet read as grey) on three equal channels."""
    return image if image.shape[0] == 3 else image.expand(3, -1, -1).contiguous()


def reconstruction_scores(fake: torch.Tensor, real: torch.Tensor, ms_ssim_window: int = 11) -> dict[str, np.ndarray]:
    """Per-image MAE, MSE, RMSE, SSIM and MS-SSIM of (N, C, H, W) reconstructions against originals, both in [0, 1],
    at data range 1 (keys as the records state them; MS-SSIM ``ms_ssim`` or ``ms_ssim[win=K]``)."""
    from bench.metrics.image import ms_ssim, ms_ssim_key, pixel_errors, ssim, ssim_key

    if fake.shape != real.shape:
        raise ValueError(f"reconstructions {tuple(fake.shape)} and originals {tuple(real.shape)} differ in shape")
    out = {k: v.numpy() for k, v in pixel_errors(fake, real).items()}
    out[ssim_key(1.0)] = ssim(fake, real, data_range=1.0).double().numpy()
    out[ms_ssim_key(ms_ssim_window)] = ms_ssim(fake, real, data_range=1.0, win_size=ms_ssim_window).double().numpy()
    return out

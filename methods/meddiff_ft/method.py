"""MedDiff-FT (Xie et al., MICCAI 2025; seeds 000/003): an inpainting diffusion model fine-tuned on ~30 lesion
image-mask pairs paints lesions into generated masks on lesion-free backgrounds. See README.md for every
paper-vs-code decision and spec ``research/papers_meddiff_diffboost.md`` Part A."""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.diffusion.finetune import lesion_pairs
from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

STATE_FILE = "meddiff_ft.json"
WEIGHTS_FILE = "meddiff_ft.safetensors"


@dataclass(frozen=True)
class MedDiffFTConfig:
    """MedDiff-FT options; defaults are the paper profile (spec A.2-A.7, A.13; [O] marks the spec's choices)."""

    backbone: str = "mini-sd"
    """``mini-sd`` (turned into its inpainting twin) or a local diffusers SD folder (paper: SD-1.5-inpainting)."""
    resolution: int = 512
    """Fine-tuning / generation side (code: 512; mini-sd: 32)."""
    prompt: str = "a photo of hta"
    """Trigger prompt (code: "a photo of hta"; paper: "An image of hta")."""
    n_finetune: int = 30
    """Lesion pairs the inpainter is fine-tuned on (paper: ~30), drawn from the non-empty training masks."""
    steps: int = 500
    """Fine-tuning optimiser steps (README: 500; paper: 2000)."""
    batch_size: int = 1
    """Per-micro-batch size (code: 1)."""
    grad_accum: int = 2
    """Gradient accumulation (code: 2; effective batch 2 = paper)."""
    lr: float = 3e-6
    """Constant AdamW learning rate (README: 3e-6; script default 5e-6)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (code)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (code)."""
    loss: Literal["masked", "plain"] = "masked"
    """``masked`` (paper Eq. 1: error weighted by M) or ``plain`` (code: epsilon MSE over the whole image)."""
    train_seed: int = 42
    """Seed of the subset draw and fine-tuning, mixed with the run seed (the code sets none)."""
    background_source: Literal["auto", "dataset", "generator"] = "auto"
    """Lesion-free backgrounds: the training images with an empty mask (BUSI 'normal'), the non-lesion generator
    G_bg (A.4), or ``auto`` (the dataset's when it has any, else G_bg)."""
    n_backgrounds: int = 50
    """Backgrounds used (paper: 50; Table 4: 20, 30, 50); condition i gets background i mod B (code's pairing)."""
    bg_prompt: str = "a photo of hta"
    """G_bg's prompt ([U]; the same trigger)."""
    bg_steps: int | None = None
    """G_bg fine-tuning steps (None: ``steps``)."""
    bg_dilate: int = 3
    """Pixels the lesion mask is dilated by before G_bg repairs it (spec A.14: ~3)."""
    bg_sample_steps: int = 50
    """DDIM steps of G_bg's repair (Eq. 2 blending, pasted back outside the region) [U]."""
    bg_guidance_scale: float = 7.5
    """Classifier-free guidance of G_bg's repair [U] (the lesion generator's default)."""
    mask_generator: bool = True
    """New masks from G_mask (paper); False: cycle the training masks (ablation of mask diversity)."""
    mask_resolution: int = 128
    """G_mask side ([U]; spec A.13: 128)."""
    mask_channels: tuple[int, ...] = (64, 128, 256, 512)
    """G_mask UNet widths (paper: 64, 128, 256, 512)."""
    mask_steps: int = 3000
    """G_mask training steps ([U]; spec: ~3000)."""
    mask_batch_size: int = 16
    """G_mask batch ([U])."""
    mask_lr: float = 2e-4
    """G_mask AdamW lr ([U], from scratch)."""
    mask_sample_steps: int = 50
    """G_mask DDIM steps ([U])."""
    mask_min_area: float = 0.005
    """Smallest accepted mask area fraction (spec A.14)."""
    mask_max_area: float = 0.6
    """Largest accepted mask area fraction (spec A.14)."""
    mask_tries: int = 4
    """Draws per mask before a real training mask is used instead (counted in the sample meta)."""
    sampler: str = "pndm"
    """Inpainting sampler (SD-inpainting's saved scheduler: PNDM or DDIM by revision)."""
    sample_steps: int = 50
    """Sampling steps (diffusers default: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance (diffusers default: 7.5)."""
    blend: Literal["eq2", "none"] = "eq2"
    """``eq2`` (paper Eq. 2: background outside M at every step) or ``none`` (code's 9-channel pipeline)."""
    paste_back: bool = False
    """Paste the background outside M after decoding (spec A.3 [O]: off)."""
    seed_mode: Literal["per-sample", "fixed"] = "per-sample"
    """Noise per condition (derive_seed(run seed, 17, i)) or the code's seed 12345 for every image."""
    quality_filter: bool = False
    """Similarity-band quality filter (Table 3 '+filter'; Tables 1, 2 and 4 use none)."""
    qa_extractor: str = "dinov2-base"
    """Feature extractor of the filter (paper: DINOv2, ``dinov2-base`` from the weights dir; mini: ``mini-clip``)."""
    weights_dir: str | None = None
    """Folder of the extractor weights (default: BENCH_WEIGHTS_DIR)."""
    qa_low: float | None = None
    """Absolute lower similarity bound (None: the ``qa_low_q`` quantile of the calibration batch)."""
    qa_high: float | None = None
    """Absolute upper similarity bound (None: the ``qa_high_q`` quantile)."""
    qa_low_q: float = 0.10
    """Lower quantile of the band (spec A.6 [O])."""
    qa_high_q: float = 0.90
    """Upper quantile of the band (spec A.6 [O])."""
    qa_retries: int = 3
    """Redraws of a pair outside the band; the closest draw is kept after that (flagged ``qa_pass: false``)."""
    mask_erosion: bool = False
    """Erode the output masks (Table 3 '+corrode'; Tables 1, 2 and 4: no)."""
    erode_kernel: int | None = None
    """Erosion disk diameter (None: max(3, odd(1 % of the side)))."""
    erode_iterations: int = 1
    """Erosion iterations ([U])."""
    generate_batch: int = 8
    """Conditions generated together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        for key in ("resolution", "n_finetune", "batch_size", "grad_accum", "n_backgrounds", "mask_resolution",
                    "mask_batch_size", "mask_sample_steps", "mask_tries", "sample_steps", "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.steps < 0 or self.mask_steps < 0:
            raise ConfigError("method.steps and method.mask_steps must be >= 0")
        if not 0 <= self.mask_min_area < self.mask_max_area <= 1:
            raise ConfigError("method.mask_min_area < method.mask_max_area must lie in [0, 1]")
        if not 0 <= self.qa_low_q < self.qa_high_q <= 1:
            raise ConfigError("method.qa_low_q < method.qa_high_q must lie in [0, 1]")
        if self.mask_resolution % 2 ** (len(self.mask_channels) - 1):
            raise ConfigError(f"method.mask_resolution={self.mask_resolution} must be divisible by "
                              f"{2 ** (len(self.mask_channels) - 1)} (one halving per extra G_mask level)")


class MedDiffFT(GeneratorBase):
    """Inpainting fine-tune + mask generator + backgrounds -> (image with a painted lesion, its mask)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "label", "prompt", "reference"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        fit_needs=frozenset({"mask"}))
    Config = MedDiffFTConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({
        "sampler", "sample_steps", "guidance_scale", "blend", "paste_back", "seed_mode", "quality_filter",
        "qa_extractor", "weights_dir", "qa_low", "qa_high", "qa_low_q", "qa_high_q", "qa_retries", "mask_erosion",
        "erode_kernel", "erode_iterations", "generate_batch", "mask_sample_steps", "mask_min_area", "mask_max_area",
        "mask_tries"})

    def __init__(self, config: MedDiffFTConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.unet: Any = None
        self.mask_unet: Any = None
        self.backgrounds: torch.Tensor | None = None
        self.real_masks: torch.Tensor | None = None
        self.state: dict[str, Any] = {}
        self.qa_band: tuple[float, float] | None = None
        self._extractor: Any = None

    # -- model ---------------------------------------------------------------------------------------
    def _ensure_backbone(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone_at

            self.parts = load_backbone_at(self.config.backbone, self.config.resolution, owner="MedDiff-FT")

    def _images(self, samples: Sequence[Sample]) -> torch.Tensor:
        from bench.tasks.common import resize_image

        r = self.config.resolution
        return torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1), r)
                            for s in samples])

    def _masks(self, masks: Sequence[torch.Tensor], size: int | None = None) -> torch.Tensor:
        from bench.tasks.common import resize_mask

        return torch.stack([resize_mask(m, size or self.config.resolution) for m in masks])

    # -- protocol ------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from .inpaint import conversion_cost, inpaint, inpainting_twin, train_inpainter
        from .masks import build_mask_unet, train_mask_ddpm

        c = self.config
        bad = [i for i, s in enumerate(train) if s.image is None or s.mask is None]
        if bad:
            raise FitSetError(f"meddiff-ft trains on image-mask pairs; training sample {bad[0]} lacks an image or mask")
        self._ensure_backbone()
        seed = derive_seed(c.train_seed, ctx.seed)
        lesion = [s for s in train if bool(s.mask.any())]
        normal = [s for s in train if not bool(s.mask.any())]
        if not lesion:
            raise FitSetError("meddiff-ft needs training pairs with a non-empty lesion mask; every mask is empty")
        g = torch.Generator().manual_seed(seed)
        chosen = lesion_pairs(lesion, c.n_finetune, g)
        images, masks = self._images(chosen), self._masks([s.mask for s in chosen])
        cost = conversion_cost(self.parts.unet)
        logger.info("meddiff-ft fit: %d of %d lesion pairs, %d steps x %d x %d, lr %g, loss %s, %d px, backbone %s "
                    "(inpainting twin: +%d parameters, %.3f %%)", len(chosen), len(lesion), c.steps, c.batch_size,
                    c.grad_accum, c.lr, c.loss, c.resolution, self.parts.name, cost["extra_parameters"],
                    100 * cost["relative"])
        self.unet = inpainting_twin(self.parts.unet)
        log = train_inpainter(self.parts, self.unet, images, masks, c.prompt, c, seed=derive_seed(seed, 1),
                              advance=ctx.progress("lesion inpainter", c.steps))
        # backgrounds (A.5): the dataset's lesion-free images, or lesions repaired by G_bg (A.4)
        source = c.background_source
        if source == "auto":
            source = "dataset" if normal else "generator"
        if source == "dataset":
            if not normal:
                raise FitSetError("method.background_source=dataset: the training split has no empty-mask image")
            pick = torch.randperm(len(normal), generator=g)[:c.n_backgrounds].tolist()
            backgrounds = self._images([normal[i] for i in pick])
            bg_log: list[dict[str, float]] = []
        else:
            bg_config = _Steps(c, c.bg_steps if c.bg_steps is not None else c.steps)
            bg_unet = inpainting_twin(self.parts.unet)
            bg_log = train_inpainter(self.parts, bg_unet, images, ~masks, c.bg_prompt, bg_config,
                                     seed=derive_seed(seed, 2), advance=ctx.progress("non-lesion generator",
                                                                                      bg_config.steps))
            pick = torch.randperm(len(lesion), generator=g)[:c.n_backgrounds].tolist()
            sources = self._images([lesion[i] for i in pick])
            repair = _dilate(self._masks([lesion[i].mask for i in pick]), c.bg_dilate)
            backgrounds = torch.cat([
                inpaint(self.parts, bg_unet, sources[k:k + c.generate_batch], repair[k:k + c.generate_batch],
                        c.bg_prompt, [derive_seed(seed, 3, k + j) for j in range(len(sources[k:k + c.generate_batch]))],
                        "ddim", c.bg_sample_steps, c.bg_guidance_scale, "eq2", paste_back=True)
                for k in range(0, len(sources), c.generate_batch)])
            del bg_unet
        self.backgrounds = backgrounds
        # mask generator (A.4) on every non-empty training mask
        self.real_masks = self._masks([s.mask for s in lesion], c.mask_resolution)
        mask_log: list[dict[str, float]] = []
        if c.mask_generator:
            self.mask_unet = build_mask_unet(c.mask_resolution, c.mask_channels, derive_seed(seed, 4))
            mask_log = train_mask_ddpm(self.mask_unet, self.real_masks, c.mask_steps, c.mask_batch_size, c.mask_lr,
                                       derive_seed(seed, 5), advance=ctx.progress("mask generator", c.mask_steps))
        self.state = {"finetune_ids": [s.meta.get("id") for s in chosen], "background_source": source,
                      "n_backgrounds": len(backgrounds), "conversion_cost": cost, "log": log[-20:],
                      "bg_log": bg_log[-20:], "mask_log": mask_log[-20:]}

    def _extract(self, images: torch.Tensor) -> torch.Tensor:
        if self._extractor is None:
            from bench.tasks.common import load_fd_extractor

            self._extractor = load_fd_extractor(self.config.qa_extractor, self.config.weights_dir)
        with torch.no_grad():
            return self._extractor(images).float().flatten(1)

    def _masks_for(self, chunk: Sequence[Condition], index: list[int], seed: int) -> torch.Tensor:
        """The condition's mask where given, else a G_mask sample (or a training mask), at the model resolution."""
        from .masks import sample_masks

        c = self.config
        out: list[torch.Tensor | None] = [None] * len(chunk)
        need = [k for k, cond in enumerate(chunk) if cond.mask is None]
        for k, cond in enumerate(chunk):
            if cond.mask is not None:
                out[k] = self._masks([cond.mask])[0]
        if need:
            if c.mask_generator:
                masks, _ = sample_masks(self.mask_unet, [derive_seed(seed, 23, index[k]) for k in need],
                                        c.mask_sample_steps, c.mask_min_area, c.mask_max_area, c.mask_tries,
                                        fallback=self.real_masks)
                for j, k in enumerate(need):
                    out[k] = self._masks([masks[j]])[0]
            else:
                for k in need:
                    out[k] = self._masks([self.real_masks[index[k] % len(self.real_masks)]])[0]
        return torch.stack(out)  # type: ignore[arg-type]

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from .inpaint import inpaint
        from .quality import band_distance, cosine_similarity, erode_mask, in_band, quantile_band

        c = self.config
        if self.unet is None or self.backgrounds is None:
            raise RuntimeError("meddiff-ft: generate() before fit() or load()")
        self._ensure_backbone()
        B = len(self.backgrounds)
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            masks = self._masks_for(chunk, index, ctx.seed)
            bg_index = [i % B for i in index]
            backgrounds = self.backgrounds[bg_index]

            def draw(attempt: int, rows: list[int]) -> torch.Tensor:
                seeds = [12345 + attempt if c.seed_mode == "fixed" else derive_seed(ctx.seed, 17, index[k], attempt)
                         for k in rows]
                return inpaint(self.parts, self.unet, backgrounds[rows], masks[rows], c.prompt, seeds, c.sampler,
                               c.sample_steps, c.guidance_scale, c.blend, c.paste_back)

            images = draw(0, list(range(len(chunk))))
            sims = torch.full((len(chunk),), math.nan)
            passed = [True] * len(chunk)
            if c.quality_filter:
                ref = self._extract(backgrounds)
                sims = cosine_similarity(self._extract(images), ref)
                if self.qa_band is None:
                    self.qa_band = (c.qa_low if c.qa_low is not None else quantile_band(sims, c.qa_low_q, c.qa_high_q)[0],
                                    c.qa_high if c.qa_high is not None else quantile_band(sims, c.qa_low_q, c.qa_high_q)[1])
                    logger.info("meddiff-ft quality band [%.4f, %.4f] (%s)", *self.qa_band, c.qa_extractor)
                for attempt in range(1, c.qa_retries + 1):
                    rows = [k for k in range(len(chunk)) if not bool(in_band(sims[k:k + 1], self.qa_band)[0])]
                    if not rows:
                        break
                    redo = draw(attempt, rows)
                    new = cosine_similarity(self._extract(redo), ref[rows])
                    for j, k in enumerate(rows):
                        if band_distance(new[j:j + 1], self.qa_band)[0] < band_distance(sims[k:k + 1], self.qa_band)[0]:
                            images[k], sims[k] = redo[j], new[j]
                passed = [bool(in_band(sims[k:k + 1], self.qa_band)[0]) for k in range(len(chunk))]
            for k, cond in enumerate(chunk):
                label = erode_mask(masks[k], c.erode_kernel, c.erode_iterations) if c.mask_erosion else masks[k]
                meta = {"background": bg_index[k], "source_id": cond.meta.get("source_id"),
                        "mask_from": "condition" if cond.mask is not None else
                        ("generator" if c.mask_generator else "training-masks")}
                if c.quality_filter:
                    meta.update({"similarity": float(sims[k]), "qa_pass": passed[k], "qa_band": list(self.qa_band)})
                yield Sample(image=images[k], mask=label, label=cond.label, prompt=c.prompt, meta=meta)

    # -- state ---------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"unet.{k}": v.contiguous() for k, v in self.unet.state_dict().items()}
        if self.mask_unet is not None:
            tensors.update({f"mask_unet.{k}": v.contiguous() for k, v in self.mask_unet.state_dict().items()})
        tensors["backgrounds"] = self.backgrounds.contiguous()
        tensors["real_masks"] = self.real_masks.to(torch.uint8).contiguous()
        save_file(tensors, str(path / WEIGHTS_FILE))
        (path / STATE_FILE).write_text(json.dumps({"config": asdict(self.config), "unet_config": dict(self.unet.config),
                                                   **self.state}, default=str))

    def load(self, path: Path) -> None:
        from diffusers import UNet2DConditionModel
        from safetensors.torch import load_file

        from .masks import build_mask_unet

        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"no fitted meddiff-ft state in {path} (expected {WEIGHTS_FILE})")
        self._ensure_backbone()
        state = json.loads((path / STATE_FILE).read_text())
        tensors = load_file(str(path / WEIGHTS_FILE))
        unet_config = {k: v for k, v in state.pop("unet_config").items() if not k.startswith("_")}
        self.unet = UNet2DConditionModel.from_config(unet_config)
        self.unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
        self.unet.to(self.parts.device).eval().requires_grad_(False)
        mask_state = {k[10:]: v for k, v in tensors.items() if k.startswith("mask_unet.")}
        if mask_state:
            self.mask_unet = build_mask_unet(self.config.mask_resolution, self.config.mask_channels, 0)
            self.mask_unet.load_state_dict(mask_state)
            self.mask_unet.eval().requires_grad_(False)
        self.backgrounds = tensors["backgrounds"]
        self.real_masks = tensors["real_masks"].bool()
        state.pop("config", None)
        self.state = state


@dataclass(frozen=True)
class _Steps:
    """The fine-tuning options of ``base`` with another step count (G_bg)."""

    base: Any
    steps: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def _dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of (N, H, W) masks by a (2p + 1) square."""
    if pixels <= 0:
        return masks
    return F.max_pool2d(masks.float()[:, None], 2 * pixels + 1, stride=1, padding=pixels)[:, 0] > 0.5

"""The dual-branch controllable diffusion generator of thesis chapter 5 (low-contrast bias mitigation).

Stage I (`fit`) is DiDGen's region-aware fine-tuning, inherited unchanged from `bench.diffusion.derm_t2i.DermT2I`
(the fit DiDGen is built on; same config keys). Stage II/III (`generate`) is training-free: per condition the reference image is DDIM-inverted, its
layout mask is randomly augmented (`augment.py`), and the layout and style branches are run (`generate.py`).
See README.md for every thesis-vs-code decision.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from bench.diffusion.derm_t2i import DermT2I, DermT2IConfig
from bench.interface import Capabilities, Condition, RunContext, Sample, derive_seed

from .augment import LayoutAugmentConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DualBranchConfig(DermT2IConfig):
    """DiDGen's keys (Stage I and the shared guidance/read-out keys) plus the chapter 5 Stage II keys.

    Defaults are the paper profile (spec ch5 sections 3.3, 3.4, 4.1; [A] = the spec's suggestion for a value the
    thesis leaves open).
    """

    require_captions: bool = False
    """Stage I fine-tunes on captions when the dataset has them; chapter 5 does not use DermPrompts, so none is
    required."""
    sampler: str = "ddim"
    """Sampler of Stage II: DDIM, the sampler DDIM inversion is the inverse of (spec 3.3 [A]). Only ``ddim``."""
    guidance_fraction: float = 1.0
    """Fraction of iterations with latent guidance: the joint phase and then the layout branch at every remaining
    step (Eq. 5.10 wording, spec 3.3 [A])."""
    gaussian_smoothing: bool = True
    """Smooth the CA maps (thesis ch. 5 text: yes, kernel 3, sigma 0.5 [A])."""
    init: Literal["inversion", "noise"] = "inversion"
    """Initial latent: the reference's inverted z_T (thesis) or seeded noise."""
    kv_source: Literal["inversion", "reconstruction"] = "inversion"
    """Where the style K/V are recorded: during DDIM inversion (thesis, StyleID) or while DDIM-denoising the
    inverted z_T (a style branch that reconstructs the reference)."""
    branches: Literal["dual", "single"] = "dual"
    """``single``: the thesis' single-branch ablation (no split; guidance and injection on one trajectory)."""
    split_fraction: float = 0.5
    """Fraction of the iterations before the split into two branches (thesis: t = T/2)."""
    lambda_attn: float = 1.0
    """Weight of L_CA + L_SA in the guidance loss (thesis: 1)."""
    lambda_style: float = 50.0
    """Weight of the latent mean/std style loss in the joint phase (thesis: 50)."""
    style_loss_after_split: bool = False
    """Also pull the layout branch's latent statistics towards the style branch's after the split (not thesis)."""
    inject_layers: int | None = 5
    """Inject the last N decoder self-attention layers (StyleID's layers 7-11 = SD 2.1's last 5 of 9 [A]);
    None: all decoder layers (thesis: "U-Net decoder blocks"); 0: no injection."""
    query_gamma: float = 1.0
    """Query preservation: q = gamma q_layout + (1 - gamma) q_style (thesis: full replacement, 1; StyleID: 0.75)."""
    attn_temperature: float = 1.0
    """Attention temperature of the injected rows (thesis: none, 1; StyleID: 1.5)."""
    augment: bool = True
    """Randomly augment the condition's mask before following it (thesis 5.4.1)."""
    aug_resize: Literal["morphology", "scaling", "none"] = "morphology"
    """Expansion/compression by dilation/erosion or per-axis scaling about the centroid (spec 4.1 [A])."""
    aug_p_expand: float = 0.5
    """Probability of expansion (else compression) [A]."""
    aug_morph_fraction: tuple[float, float] = (0.02, 0.10)
    """Dilation/erosion distance as a fraction of the equivalent radius (spec 4.1 [A]: 2-10 %)."""
    aug_scale_range: tuple[float, float] = (0.8, 1.2)
    """Per-axis scale range with ``aug_resize=scaling`` (spec 4.1 [A])."""
    aug_p_flip: float = 0.5
    """Probability of each flip (spec 4.1 [A]: 0.5 per axis)."""
    aug_p_rotate: float = 1.0
    """Probability of a rotation [A]."""
    aug_rotation_range: tuple[float, float] = (0.0, 360.0)
    """Rotation range in degrees (spec 4.1 [A]: uniform [0, 360))."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if self.sampler != "ddim":
            raise ConfigError(f"method.sampler must be 'ddim' for the dual-branch generator (DDIM inversion), "
                              f"got '{self.sampler}'")
        if not 0.0 <= self.split_fraction <= 1.0:
            raise ConfigError(f"method.split_fraction must be in [0, 1], got {self.split_fraction}")
        from bench.diffusion.style import check_injection_options

        check_injection_options(self)
        for name in ("aug_p_expand", "aug_p_flip", "aug_p_rotate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"method.{name} must be in [0, 1], got {getattr(self, name)}")

    def augment_config(self) -> LayoutAugmentConfig:
        """The `LayoutAugmentConfig` of the ``aug_*`` keys."""
        return LayoutAugmentConfig(resize=self.aug_resize, p_expand=self.aug_p_expand,
                                   morph_fraction=tuple(self.aug_morph_fraction),
                                   scale_range=tuple(self.aug_scale_range), p_flip=self.aug_p_flip,
                                   p_rotate=self.aug_p_rotate, rotation_range=tuple(self.aug_rotation_range))


class DualBranch(DermT2I):
    """Chapter 5's generator: DiDGen fine-tuning, then per condition a layout branch following the (augmented) mask
    and a style branch carrying the reference's self-attention K/V; returns the style branch's image and the layout
    branch's attention-read-out mask."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "reference", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask", "reference"}))
    Config = DualBranchConfig
    version: ClassVar[str] = "1"

    def target_mask(self, cond: Condition, index: int, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The layout the pair follows: the condition's mask, augmented with a generator seeded by ``seed``."""
        import numpy as np

        from .augment import augment_layout

        if cond.mask is None:
            raise ValueError(f"condition {index} has no mask (the dual-branch generator requires one)")
        mask = cond.mask.bool().cpu().numpy()
        if not self.config.augment:
            return torch.from_numpy(mask), {}
        out, params = augment_layout(mask, np.random.default_rng(seed), self.config.augment_config())
        return torch.from_numpy(out), params

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.tasks.common import resize_image, resize_mask

        from .generate import generate_dual

        self._ensure_model()
        c = self.config
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            seeds = [derive_seed(ctx.seed, 17, i) for i in index]
            prompts = [self._prompt(cond, i) for cond, i in zip(chunk, index)]
            targets, params = zip(*(self.target_mask(cond, i, s) for cond, i, s in zip(chunk, index, seeds)))
            for k, cond in enumerate(chunk):
                if cond.reference is None:
                    raise ValueError(f"condition {index[k]} has no reference image (the style source)")
            refs = torch.stack([resize_image(cond.reference, c.resolution) for cond in chunk])
            images, masks = generate_dual(self.parts, prompts, list(targets), refs, seeds, self.placeholder_ids, c)
            for k, cond in enumerate(chunk):
                target = resize_mask(targets[k], masks.shape[-1])
                inter, union = (target & masks[k]).sum(), (target | masks[k]).sum()
                meta = {"prompt": prompts[k], "source_id": cond.meta.get("source_id"),
                        "condition_iou": float(inter / union) if union else 1.0, "augmentation": params[k]}
                yield Sample(image=images[k], mask=masks[k], label=cond.label, prompt=prompts[k], meta=meta)

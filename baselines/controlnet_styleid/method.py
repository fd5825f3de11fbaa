"""controlnet-styleid: the "ControlNet + StyleID" baseline of thesis chapter 5 (Tables 5.2-5.4).

"A two-stage pipeline: the finetuned ControlNet generates structure from the mask, then training-free StyleID
transfers the style from the reference image" (thesis; spec ``research/ch5_lowcontrast.md`` section 5). Stage 1 is
the `controlnet` baseline unchanged (its fit, save/load, prompt and sampling: this class subclasses it); Stage 2 is
StyleID (Chung et al., CVPR 2024; `styleid.styleid_transfer`) on the same frozen backbone UNet, with the
ControlNet's sample as the content image and the condition's ``reference`` (the real image) as the style image.
StyleID's defaults are the spec's [A]: query preservation 0.75, temperature 1.5, the decoder self-attention layers
7-11 (the last 5 of SD 2.1's up-block layers), DDIM 50 steps, AdaIN on the initial latent, no text.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from baselines.controlnet.method import ControlNet, ControlNetConfig
from bench.interface import Capabilities, Condition, RunContext, Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlNetStyleIDConfig(ControlNetConfig):
    """The ControlNet baseline's keys (Stage 1: training and sampling, `ControlNetConfig`) plus StyleID's (Stage 2).

    Defaults are the paper profile; the StyleID values are the official code's defaults (spec ch5 section 5 [A]).
    """

    style_steps: int = 50
    """DDIM steps of StyleID's two inversions and of its stylised denoising (StyleID's LDM code: 50 [A]; its
    diffusers port: 20)."""
    query_gamma: float = 0.75
    """Query preservation: q_hat = gamma q_content + (1 - gamma) q_current (StyleID: 0.75 [A])."""
    attn_temperature: float = 1.5
    """Attention temperature tau multiplying the injected layers' logits (StyleID: 1.5 [A])."""
    inject_layers: int | None = 5
    """Inject the last N decoder self-attention layers (StyleID's layers 7-11 = the last 5 of SD 2.1's 9 [A]);
    None: all decoder layers; 0: none (AdaIN + DDIM reconstruction of the ControlNet sample only)."""
    adain_init: bool = True
    """Start the stylised denoising from the content's inverted latent AdaIN-normalised to the style's (StyleID's
    initial-latent AdaIN [A]); off: from the content's inverted latent."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if self.style_steps < 1:
            raise ConfigError(f"method.style_steps must be >= 1, got {self.style_steps}")
        from bench.diffusion.style import check_injection_options

        check_injection_options(self)


#: Options that only steer generation (Stage 1 sampling and all of Stage 2): runs differing only in them share a fit.
GENERATION_ONLY = frozenset({"condition_prompt", "sampler", "sample_steps", "guidance_scale",
                             "controlnet_conditioning_scale", "generate_batch", "style_steps", "query_gamma",
                             "attn_temperature", "inject_layers", "adain_init"})


def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


class ControlNetStyleID(ControlNet):
    """Mask -> structure (the fitted ControlNet), then reference -> style (training-free StyleID)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "reference", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask", "reference"}))
    Config = ControlNetStyleIDConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = GENERATION_ONLY

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.tasks.common import resize_image

        from .styleid import styleid_transfer

        c = self.config
        for i, cond in enumerate(conditions):
            if cond.mask is None:
                raise ValueError(f"controlnet-styleid needs a mask in every condition; condition {i} has none")
            if cond.reference is None:
                raise ValueError(f"controlnet-styleid needs a reference (style) image in every condition; "
                                 f"condition {i} has none")
        # Stage 1 yields batch by batch (``generate_batch``, seeded per condition index); Stage 2 takes each batch
        stage1 = super().generate(conditions, ctx)
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            content = [next(stage1) for _ in chunk]
            style = torch.stack([resize_image(_rgb(cond.reference.float()), c.resolution) for cond in chunk])
            images = styleid_transfer(self.parts, torch.stack([s.image for s in content]), style, c.style_steps,
                                      c.inject_layers, c.query_gamma, c.attn_temperature, c.adain_init)
            for sample, image in zip(content, images):
                yield dataclasses.replace(sample, image=image.cpu())

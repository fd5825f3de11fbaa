"""vanilla-ldm: the base text-to-image model without fine-tuning, sampled from the same label prompts as
CXR-IRGen (thesis Table 6.1 / 6.2 "Vanilla LDM": SD v1.4; mini: mini-sd, which has never seen a chest X-ray).

Prompts come from the condition's label vector through CXR-IRGen's template (`bench.diffusion.cxr_prompts`); whether
the thesis appended the reference image embedding is not stated [U]: ``rie=false`` (plain text conditioning, the
base model was never trained with an image token) is the default. PNDM + CFG as CXR-IRGen samples.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed


@dataclass(frozen=True)
class VanillaLDMConfig:
    """Options of vanilla-ldm (defaults: the paper profile)."""

    base_model: str = "stable-diffusion-v1-4"
    """A local diffusers folder (CompVis/stable-diffusion-v1-4) or ``mini-sd``."""
    resolution: int = 256
    prompt_wording: Literal["thesis", "code"] = "thesis"
    sampler: str = "pndm"
    sample_steps: int = 50
    guidance_scale: float = 7.5
    generate_batch: int = 20


class VanillaLDM(GeneratorBase):
    """The base model sampled from label prompts (nothing is fitted)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"labels"}, returns={"image"}, requires={"labels"})
    Config = VanillaLDMConfig
    version: ClassVar[str] = "1"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.parts: Any = None

    def _load(self) -> Any:
        from bench.diffusion.models import load_mini_sd, load_sd

        if self.parts is None:
            c = self.config
            if c.base_model == "mini-sd":
                self.parts = load_mini_sd()
            elif Path(c.base_model).expanduser().is_dir():
                self.parts = load_sd(Path(c.base_model).expanduser())
            else:
                raise FileNotFoundError(f"vanilla-ldm base model folder not found: {c.base_model} (a diffusers Stable "
                                        "Diffusion folder, or 'mini-sd')")
        return self.parts

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.cxr_prompts import binary_labels, label_to_prompt
        from bench.diffusion.sampling import make_scheduler, sample

        c = self.config
        parts = self._load()
        side = c.resolution // parts.codec.factor
        shape = (int(parts.unet.config.out_channels), side, side)
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            prompts = [label_to_prompt(binary_labels(cond.labels.float()), c.prompt_wording) for cond in chunk]
            noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(derive_seed(ctx.seed, 17, i)))
                                 for i in index])
            sched = make_scheduler(c.sampler, parts.scheduler)
            sched.set_timesteps(c.sample_steps)
            with torch.no_grad():
                cond = parts.encode_prompt(prompts).float()
                images = sample(parts.unet, cond, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond, latents=noise * sched.init_noise_sigma)
            for k, cond_k in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1).clone(), labels=cond_k.labels.clone(), prompt=prompts[k])

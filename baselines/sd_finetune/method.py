"""sd-finetune: full-UNet fine-tuning of the text-to-image backbone with the plain denoising loss (thesis ch. 4,
the "SD-Finetune" / "Finetune" baseline of Tables 4.1, 4.2 and 4.4).

The same training loop, data and hyperparameters as DiDGen (`bench.diffusion.t2i_finetune.finetune`) with the attention
loss off and plain words instead of placeholder tokens: training prompts are ``"An image of lesion on skin."``
(prefix only with probability 0.2) followed by the caption, generation prompts the prefix (Table 4.1) or the
task's prompt (derm-cls class prompts, ``method.prompt=condition``). Text-only sampling with classifier-free
guidance; returns images only.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, RunContext, Sample, derive_seed
from methods.didgen.method import DiDGen, DiDGenConfig


@dataclass(frozen=True)
class SDFinetuneConfig(DiDGenConfig):
    """DiDGen's fine-tuning options without the attention loss and placeholders (defaults: the paper profile)."""

    use_placeholders: bool = False
    """Plain ``lesion``/``skin`` words (the baseline has no placeholder tokens)."""
    attn_weight: float = 0.0
    """No region-aware loss."""
    require_captions: bool = False
    """Captions are used when present; the baseline is defined by the prefix prompt (thesis Exp. 1), so none is
    required."""
    prompt: Literal["prefix", "dermprompt", "condition"] = "prefix"
    """Generation prompt: ``"An image of lesion on skin."`` (Table 4.1), a training caption, or the task's prompt."""


class SDFinetune(DiDGen):
    """Fine-tuned text-to-image model sampled from text only."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"prompt", "label"}),
                                                        returns=frozenset({"image"}))
    Config = SDFinetuneConfig
    version: ClassVar[str] = "1"

    def _ensure_model(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone

            self.parts = load_backbone(self.config.backbone, owner="SD-Finetune")
            self.parts.text_encoder.requires_grad_(False)
            self.placeholder_ids = []

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample

        self._ensure_model()
        c = self.config
        parts = self.parts
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
        shape = parts.sample_shape(1)[1:]
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            prompts = [self._prompt(cond, i) for cond, i in zip(chunk, index)]
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(derive_seed(ctx.seed, 17, i)))
                                   for i in index])
            sched = make_scheduler(c.sampler, parts.scheduler)
            with torch.no_grad():
                cond = parts.encode_prompt(prompts).float()
                sched.set_timesteps(c.sample_steps)
                images = sample(parts.unet, cond, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents * sched.init_noise_sigma)
            for k, cond_k in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1), label=cond_k.label, prompt=prompts[k])

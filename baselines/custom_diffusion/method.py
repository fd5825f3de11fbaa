"""custom-diffusion: Custom Diffusion (Kumari et al., CVPR 2023) as the chapter-3 baseline (thesis 3.4.1 / 3.6.3,
spec ``research/ch3_attencraft.md`` section 4): per scene, the cross-attention keys/values and one modifier token
per concept are fine-tuned on the one input image with the full prompt "a photo of [V1] cat and [V2] dog" (class
nouns kept, rare-token initialisation), plain diffusion loss, no masks.

The diffusers example trains ``CustomDiffusionAttnProcessor`` copies of ``to_k`` / ``to_v`` initialised from the
originals (and detaches the start token's key/value); training ``attn2.to_k`` / ``attn2.to_v`` in place with the
same detach (`bench.diffusion.customize`) is the same computation, tested against diffusers' processor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.diffusion.customize import (SceneCustomizer, SceneFit, SceneTuningConfig, adamw, install_store,
                                       optimizer_step, prompt_for, unet_forward)
from bench.interface import Sample

#: Initializer tokens of the diffusers Custom Diffusion example (``--initializer_token ktn+pll+ucd``).
RARE_WORDS = ("ktn", "pll", "ucd")


@dataclass(frozen=True)
class CustomDiffusionConfig(SceneTuningConfig):
    """Custom Diffusion as the thesis ran it (spec section 4): 200 steps at lr 5e-5, K/V + tokens, class nouns."""

    steps: int = 200
    """Training steps per scene (thesis: 200)."""
    lr: float = 5e-5
    """AdamW learning rate (thesis: 5e-5; Table 3.6: 1e-4)."""
    token_init: Literal["rare", "class"] = "rare"
    """Modifier tokens start from rare-token embeddings (thesis) or from their class words."""
    rare_words: tuple[str, ...] = field(default=RARE_WORDS)
    """Rare initializer words, one per concept in order (the diffusers example's ktn, pll, ucd)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if self.token_init == "rare" and not self.rare_words:
            raise ConfigError("method.rare_words must name at least one word for token_init=rare")


class CustomDiffusion(SceneCustomizer):
    """Custom Diffusion (module doc)."""

    Config = CustomDiffusionConfig
    version: ClassVar[str] = "1"
    label: ClassVar[str] = "custom-diffusion"
    state_file: ClassVar[str] = "custom-diffusion.json"

    def init_words(self, tokens: list[str], class_words: list[str]) -> list[str]:
        if self.config.token_init == "class":
            return list(class_words)
        words = self.config.rare_words
        return [words[k % len(words)] for k in range(len(tokens))]

    def extra_loss(self, z0: torch.Tensor, tokens: list[str], class_words: list[str], prompt: str
                   ) -> torch.Tensor | None:
        """Added to the diffusion loss of every step (DisenDiff's attention calibration); None here."""
        return None

    def setup_store(self, z0: torch.Tensor) -> Any:
        """The attention store the step losses read (None: nothing captured)."""
        return None

    def fit_scene(self, image: torch.Tensor, sample: Sample, tokens: list[str], class_words: list[str], seed: int,
                  advance: Any) -> SceneFit:
        c = self.config
        generator = torch.Generator().manual_seed(seed)
        noise_scheduler = self.noise_scheduler()
        z0 = self.encode_image(image)
        prompt = prompt_for(tokens, list(range(len(tokens))), class_words if c.class_nouns else None)
        self.store = self.setup_store(z0)
        install_store(self.parts.unet, self.store, c.fused_attention, c.detach_sot_kv)
        params = self.trainable(kv=True)
        keep = self.row_guard(tokens) if c.train_tokens else None
        optimizer = adamw(params, c.lr, c.weight_decay)
        n_train = int(noise_scheduler.config.num_train_timesteps)
        self.parts.unet.train()
        last: dict[str, float] = {}
        for _ in range(c.steps):
            t = int(torch.randint(0, n_train, (1,), generator=generator))
            noise = torch.randn(z0.shape, generator=generator)
            if self.store is not None:
                self.store.begin_step(t)
            pred = unet_forward(self.parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
            loss = F.mse_loss(pred.float(), noise)
            last = {"l_rec": float(loss.detach())}
            extra = self.extra_loss(z0, tokens, class_words, prompt)
            if extra is not None:
                loss = loss + extra
                last["l_extra"] = float(extra.detach())
            optimizer_step(loss, params, optimizer, c.max_grad_norm, keep)
            if self.store is not None:
                self.store.reset()
            advance()
        self.parts.unet.eval()
        self._freeze()
        masks = self.report_token_masks(z0, tokens, class_words, generator, noise_scheduler)
        return SceneFit(masks=masks, info={"final_losses": last, "init_words": self.init_words(tokens, class_words)})

"""break-a-scene: Break-a-Scene (Avrahami et al., SIGGRAPH Asia 2023; ``google/break-a-scene``) as the thesis ran
it for chapter 3 (3.4.1 / 3.6.3, spec ``research/ch3_attencraft.md`` sections 4 and 8.2): the official method
adapted to parameter-efficient tuning, with the concept masks given.

Per scene, two phases over the same loss:

1. textual inversion: only the placeholder embeddings (``phase1_steps`` 400 at ``phase1_lr`` 5e-4);
2. the cross-attention keys/values, the placeholder embeddings and the text encoder (``steps`` 200 at ``lr`` 5e-5).

Each step draws a random non-empty subset of the concepts (union sampling), prompts "a photo of [V_i] and [V_j]"
(no class nouns), and minimises the masked diffusion loss (prediction and noise multiplied by the union of the
subset's masks) plus ``lambda_attention`` times the sum over the subset of the MSE between each placeholder's
max-normalised cross-attention map (16x16 layers: latent / 4) and its mask.

The masks come from the task's fit set (``task.fit_masks: dataset`` for concept-mini and the Break-a-Scene copies,
``folder`` for user-supplied masks, the paper profile's stand-in for Grounding DINO + SAM).

Table 3.5: before training, each placeholder's highest raw cross-attention inside its mask (mean over the score
timesteps) is reported as ``max_ca_scores``, for the initialisation pattern ``token_init`` (P-P, P-G, G-P: precise
class or general category per concept, Table 3.4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.diffusion.attention import AttentionStore
from bench.diffusion.customize import (SceneCustomizer, SceneFit, SceneTuningConfig, adamw, attention_loss,
                                       install_store, masked_attention_scores, masked_rec_loss, optimizer_step,
                                       prompt_for, resize_masks, token_positions, unet_forward)
from bench.interface import Sample

#: General categories of Table 3.4's classes (its P-G / G-P initialisations); ``*`` for any other class word.
GENERAL_WORDS = {"cat": "animal", "dog": "animal", "cow": "animal", "bird": "animal", "pig": "animal",
                 "horse": "animal", "chair": "furniture", "lamp": "lighting", "vase": "decor", "baby": "human",
                 "toy": "toy", "man": "human", "woman": "human", "mother": "human", "child": "human", "*": "object"}
#: Precise classes where the class word is not one (Table 3.4: the baby & toy scene's toy is a rabbit).
PRECISE_WORDS = {"toy": "rabbit"}
TOKEN_INITS = ("P-P", "P-G", "G-P")


@dataclass(frozen=True)
class BreakASceneConfig(SceneTuningConfig):
    """Break-a-Scene as the thesis ran it (spec section 4; the reference code's values where it is silent)."""

    steps: int = 200
    """Phase-2 steps (thesis: 200; reference code 400 with the full UNet)."""
    lr: float = 5e-5
    """Phase-2 learning rate (thesis: 5e-5; reference code 2e-6 with the full UNet; Table 3.6: 1e-4)."""
    phase1_steps: int = 400
    """Phase-1 (textual inversion, embeddings only) steps (thesis and code: 400; 0 skips it, as the thesis'
    preliminary experiment of Table 3.5)."""
    phase1_lr: float = 5e-4
    """Phase-1 learning rate (thesis and code: 5e-4)."""
    train_text_encoder: bool = True
    """Phase 2 also tunes the text encoder (thesis: "text encoder + W_k, W_v"; the code tunes UNet + text encoder)."""
    class_nouns: bool = False
    """Prompts "[V1] and [V2]" without class nouns (thesis 3.6.3, Break-a-Scene's "<asset0> and <asset1>")."""
    lambda_attention: float = 1e-2
    """Weight of the attention loss (code: 1e-2)."""
    attn_loss_reduce: Literal["sum", "mean"] = "sum"
    """Over the subset's placeholders: summed (code) or averaged."""
    masked_loss: bool = True
    """Diffusion loss inside the union of the subset's masks (code: on)."""
    rec_mask_interp: Literal["nearest", "bilinear", "bicubic"] = "nearest"
    """Masks to the latent size for the masked loss (code: ``F.interpolate`` default, nearest)."""
    token_init: Literal["P-P", "P-G", "G-P"] = "P-P"
    """Initialisation of the two placeholders: precise class (P) or general category (G) words (Table 3.4);
    P-P is the thesis' class-name initialisation."""
    precise_words: dict[str, str] = field(default_factory=lambda: dict(PRECISE_WORDS))
    """Class word -> precise class where they differ (Table 3.4: toy -> rabbit)."""
    general_words: dict[str, str] = field(default_factory=lambda: dict(GENERAL_WORDS))
    """Class word -> general category (Table 3.4; ``*`` for other words)."""
    score_timesteps: tuple[int, ...] = (0, 20, 40, 60, 80)
    """Timesteps of the reported attention score (AttenCraft's Eq. 3.4 set [I]: the thesis does not say)."""
    ca_score_top_n: int = 1
    """Largest values averaged in the reported score (1: the "highest cross-attention score" of Table 3.5)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if self.token_init not in TOKEN_INITS:
            raise ConfigError(f"method.token_init must be one of {', '.join(TOKEN_INITS)}, got {self.token_init!r}")
        if self.phase1_steps < 0 or self.ca_score_top_n < 1 or not self.score_timesteps:
            raise ConfigError("method.phase1_steps >= 0, method.ca_score_top_n >= 1, score_timesteps non-empty")


class BreakAScene(SceneCustomizer):
    """Break-a-Scene (module doc)."""

    Config = BreakASceneConfig
    version: ClassVar[str] = "1"
    label: ClassVar[str] = "break-a-scene"
    state_file: ClassVar[str] = "break-a-scene.json"

    def trains_text_encoder(self) -> bool:
        return bool(self.config.train_text_encoder)

    def steps_per_scene(self) -> int:
        return int(self.config.phase1_steps + self.config.steps)

    def init_words(self, tokens: list[str], class_words: list[str]) -> list[str]:
        c = self.config
        pattern = c.token_init.split("-")
        out = []
        for k, word in enumerate(class_words):
            kind = pattern[k] if k < len(pattern) else "P"
            out.append(c.precise_words.get(word, word) if kind == "P"
                       else c.general_words.get(word, c.general_words.get("*", word)))
        return out

    def fit_scene(self, image: torch.Tensor, sample: Sample, tokens: list[str], class_words: list[str], seed: int,
                  advance: Any) -> SceneFit:
        c = self.config
        masks = sample.meta.get("object_masks")
        if masks is None:
            raise DataError("break-a-scene trains with one mask per concept: set task.fit_masks to 'dataset' "
                            "(concept-mini, Break-a-Scene scenes) or 'folder' (with task.mask_dir)")
        masks = torch.as_tensor(masks).bool()
        if masks.shape[0] != len(tokens):
            raise DataError(f"break-a-scene: {masks.shape[0]} masks for {len(tokens)} concepts")
        generator = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        noise_scheduler = self.noise_scheduler()
        z0 = self.encode_image(image)
        cross_res = self.cross_resolution()
        full_prompt = prompt_for(tokens, list(range(len(tokens))), class_words if c.class_nouns else None)
        scores = masked_attention_scores(self.parts, z0, full_prompt, tokens, masks, c.score_timesteps,
                                         c.ca_score_top_n, cross_res, generator, noise_scheduler,
                                         c.fused_attention, c.detach_sot_kv)
        store = AttentionStore(cross=True, resolutions={cross_res}, mode="last", keep_grad=True)
        install_store(self.parts.unet, store, c.fused_attention, c.detach_sot_kv)
        attn_masks = resize_masks(masks, cross_res, "nearest")
        rec_masks = resize_masks(masks, z0.shape[-1], c.rec_mask_interp)
        keep = self.row_guard(tokens)
        n_train = int(noise_scheduler.config.num_train_timesteps)
        last: dict[str, float] = {}
        self.parts.unet.train()
        for phase, (steps, lr) in enumerate(((c.phase1_steps, c.phase1_lr), (c.steps, c.lr))):
            if not steps:
                continue
            params = self.trainable(kv=False, rows=True) if phase == 0 else \
                self.trainable(kv=True, rows=True, text=c.train_text_encoder)
            optimizer = adamw(params, lr, c.weight_decay)
            for _ in range(steps):
                subset = sorted(int(i) for i in rng.choice(len(tokens), size=int(rng.integers(1, len(tokens) + 1)),
                                                            replace=False))
                prompt = prompt_for(tokens, subset, class_words if c.class_nouns else None)
                t = int(torch.randint(0, n_train, (1,), generator=generator))
                noise = torch.randn(z0.shape, generator=generator)
                store.begin_step(t)
                pred = unet_forward(self.parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
                mask = rec_masks[subset].amax(0)[None, None] if c.masked_loss else torch.ones_like(rec_masks[:1])[None]
                l_rec = masked_rec_loss(pred.float(), noise, mask)
                positions = token_positions(self.parts.tokenizer, prompt, [tokens[i] for i in subset])
                cross = store.maps(cross_res, "cross")[0]
                l_attn = attention_loss(cross[..., positions].permute(2, 0, 1), attn_masks[subset])
                if c.attn_loss_reduce == "sum":
                    l_attn = l_attn * len(subset)
                optimizer_step(l_rec + c.lambda_attention * l_attn, params, optimizer, c.max_grad_norm, keep)
                store.reset()
                last = {"phase": phase + 1, "l_rec": float(l_rec.detach()), "l_attn": float(l_attn.detach())}
                advance()
        self.parts.unet.eval()
        self._freeze()
        learned = self.report_token_masks(z0, tokens, class_words, generator, noise_scheduler)
        if any(math.isnan(s) for s in scores):
            raise ValueError(f"break-a-scene: attention scores are not finite: {scores}")
        return SceneFit(masks=learned, report={"max_ca_scores": scores, "token_init": c.token_init},
                        info={"final_losses": last, "init_words": self.init_words(tokens, class_words)})

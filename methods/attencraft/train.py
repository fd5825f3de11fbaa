"""AttenCraft's two stages on one scene (Algorithm 1): masks and sampling ratios, then feature-retaining training."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.diffusion.attention import AttentionStore
from bench.diffusion.customize import (DetachStartTokenProcessor, adamw, attention_loss, install_store,
                                       masked_attention_scores, masked_rec_loss, optimizer_step, prompt_for,
                                       resize_masks, token_positions, unet_forward)

from .masks import delta_masks, propagate, sample_subset, sampling_ratios

logger = logging.getLogger(__name__)

__all__ = ["DetachStartTokenProcessor", "SceneResult", "attention_loss", "create_masks", "estimate_scores",
           "install_store", "masked_rec_loss", "prompt_for", "token_positions", "train_scene"]


@dataclass
class SceneResult:
    """What fitting one scene produced."""

    masks: torch.Tensor
    scores: list[float]
    ratios: list[float]
    mask_timestep: int
    log: list[dict[str, float]] = field(default_factory=list)


def create_masks(parts: Any, z0: torch.Tensor, tokens: list[str], cfg: Any, cross_res: int, self_res: int,
                 generator: torch.Generator, noise_scheduler: Any) -> tuple[torch.Tensor, int]:
    """Stage I masks: one UNet pass at t ~ U[0, mask_t_max) with the full prompt, Eq. 3.2-3.3. (N, S, S) bool."""
    prompt = prompt_for(tokens, list(range(len(tokens))))
    store = AttentionStore(cross=True, self_attention=True, resolutions={cross_res, self_res}, mode="last")
    install_store(parts.unet, store, cfg.fused_attention, cfg.detach_sot_kv)
    t = int(torch.randint(0, cfg.mask_t_max, (1,), generator=generator))
    noise = torch.randn(z0.shape, generator=generator)
    with torch.no_grad():
        store.begin_step(t)
        unet_forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
    cross = store.maps(cross_res, "cross")[0]                                   # (h, w, 77)
    self_map = store.maps(self_res, "self")[0].reshape(self_res * self_res, -1)  # (S*S, S*S)
    positions = token_positions(parts.tokenizer, prompt, tokens)
    picked = [0, *positions] if cfg.use_sot_background else positions
    maps = propagate(cross[..., picked].permute(2, 0, 1), self_map if cfg.self_enhancement else None, cfg.nu, cfg.tau,
                     cfg.self_power_mode, side=self_res)
    background = maps[0] if cfg.use_sot_background else None
    masks = delta_masks(maps[1:] if cfg.use_sot_background else maps, background, cfg.gamma)
    for k, m in enumerate(masks):
        if not m.any():
            logger.warning("AttenCraft mask of %s is empty at t=%d (gamma %.2f too high for these maps?)",
                           tokens[k], t, cfg.gamma)
    return masks, t


def estimate_scores(parts: Any, z0: torch.Tensor, tokens: list[str], masks: torch.Tensor, cfg: Any, cross_res: int,
                    generator: torch.Generator, noise_scheduler: Any) -> list[float]:
    """Attention scores S_i (Eq. 3.4) of the raw cross-attention at ``score_timesteps`` (one fixed noise [I]),
    masks area-resized to the cross-attention resolution (soft weights)."""
    return masked_attention_scores(parts, z0, prompt_for(tokens, list(range(len(tokens)))), tokens, masks,
                                   cfg.score_timesteps, cfg.top_n, cross_res, generator, noise_scheduler,
                                   cfg.fused_attention, cfg.detach_sot_kv)


def train_scene(parts: Any, image: torch.Tensor, tokens: list[str], class_words: list[str], cfg: Any,
                params: list[torch.nn.Parameter], keep_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
                seed: int, cross_res: int, self_res: int, advance: Any = None) -> SceneResult:
    """Algorithm 1 on one image (3, R, R) in [0, 1]: masks, scores, ratios, then ``cfg.steps`` training steps.

    ``params`` are the trainable tensors (cross-attention K/V, and the embedding table when tokens are trained);
    ``keep_rows`` = (table, original values, fixed-row mask) restores every non-placeholder row after each step
    (AdamW's weight decay would otherwise move them).
    """
    from diffusers import DDPMScheduler

    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    noise_scheduler = DDPMScheduler.from_config(parts.scheduler.config)
    with torch.no_grad():
        z0 = parts.codec.encode(image[None].float())
    masks, mask_t = create_masks(parts, z0, tokens, cfg, cross_res, self_res, generator, noise_scheduler)
    scores = estimate_scores(parts, z0, tokens, masks, cfg, cross_res, generator, noise_scheduler)
    ratios = sampling_ratios(scores, cfg.sampling_ratio).tolist() if sum(scores) > 0 or cfg.sampling_ratio == "equal" \
        else [1.0 / len(tokens)] * len(tokens)
    logger.info("AttenCraft stage I: mask t=%d, mask areas %s, scores %s, ratios %s", mask_t,
                [int(m.sum()) for m in masks], [round(s, 4) for s in scores], [round(r, 3) for r in ratios])

    store = AttentionStore(cross=True, resolutions={cross_res}, mode="last", keep_grad=True)
    install_store(parts.unet, store, cfg.fused_attention, cfg.detach_sot_kv)
    attn_masks = resize_masks(masks, cross_res, "nearest")
    latent_side = z0.shape[-1]
    rec_masks = resize_masks(masks, latent_side, cfg.rec_mask_interp)
    optimizer = adamw(params, cfg.lr, cfg.weight_decay)
    n_train = int(noise_scheduler.config.num_train_timesteps)
    parts.unet.train()
    log = []
    for step in range(cfg.steps):
        subset = sample_subset(rng, ratios, cfg.omega)
        prompt = prompt_for(tokens, subset, class_words if cfg.class_nouns else None)
        t = int(torch.randint(0, n_train, (1,), generator=generator))
        noise = torch.randn(z0.shape, generator=generator)
        store.begin_step(t)
        pred = unet_forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
        cross = store.maps(cross_res, "cross")[0]
        positions = token_positions(parts.tokenizer, prompt, [tokens[i] for i in subset])
        l_attn = attention_loss(cross[..., positions].permute(2, 0, 1), attn_masks[subset], cfg.attn_loss)
        mask = rec_masks[subset].amax(0)[None, None]
        l_rec = masked_rec_loss(pred.float(), noise, mask)
        loss = l_rec + cfg.alpha * l_attn if len(subset) == 1 or cfg.use_rec_loss else l_attn
        optimizer_step(loss, params, optimizer, cfg.max_grad_norm, keep_rows)
        store.reset()
        log.append({"step": step, "concepts": len(subset), "l_rec": float(l_rec.detach()), "l_attn": float(l_attn.detach())})
        if advance is not None:
            advance()
    parts.unet.eval()
    return SceneResult(masks=masks, scores=scores, ratios=ratios, mask_timestep=mask_t, log=log)

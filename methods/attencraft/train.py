"""AttenCraft's two stages on one scene (Algorithm 1): masks and sampling ratios, then feature-retaining training."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.diffusion.attention import AttentionStore, StoringAttnProcessor
from bench.diffusion.tokens import token_indices

from .masks import attention_score, delta_masks, propagate, sample_subset, sampling_ratios

logger = logging.getLogger(__name__)


class DetachStartTokenProcessor(StoringAttnProcessor):
    """Storing attention that detaches the start-of-text token's key and value in cross-attention (Custom
    Diffusion's trick, kept by the AttenCraft code): the SoT row is identical for every prompt."""

    def adjust_qkv(self, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
        if not self.info.cross:
            return query, key, value
        return query, torch.cat([key[:, :1].detach(), key[:, 1:]], 1), torch.cat([value[:, :1].detach(), value[:, 1:]], 1)


def install_store(unet: Any, store: AttentionStore | None, fused: bool, detach_sot: bool) -> None:
    cls = DetachStartTokenProcessor if detach_sot else StoringAttnProcessor
    unet.set_attn_processor({name: cls(store, name, fused) for name in unet.attn_processors})


def prompt_for(tokens: list[str], subset: list[int], class_words: list[str] | None = None) -> str:
    """``"a photo of <new1> and <new2>"`` (the code's template), class nouns after the tokens when given."""
    words = [f"{tokens[i]} {class_words[i]}" if class_words else tokens[i] for i in subset]
    return "a photo of " + " and ".join(words)


def attention_loss(maps: torch.Tensor, masks: torch.Tensor, kind: str = "maxnorm-mse") -> torch.Tensor:
    """L_attn (Eq. 3.7) over the concepts of a step: maps (K, h, w) cross-attention, masks (K, h, w) float.

    ``maxnorm-mse`` (default, Break-a-Scene's form of the thesis' squared L2): each map divided by its max, mean squared
    error to its mask, mean over concepts. ``jsd`` (the AttenCraft code): Jensen-Shannon divergence between the
    softmax of the flattened map and of the flattened mask.
    """
    if kind == "maxnorm-mse":
        norm = maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        return ((norm - masks) ** 2).flatten(1).mean(1).mean()
    if kind == "jsd":
        p, q = F.softmax(maps.flatten(1), 1), F.softmax(masks.flatten(1), 1)
        m = 0.5 * (p + q)
        kl = lambda a, b: (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(1)  # noqa: E731
        return (0.5 * kl(p, m) + 0.5 * kl(q, m)).mean()
    raise ValueError(f"attn_loss must be 'maxnorm-mse' or 'jsd', got {kind!r}")


def masked_rec_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_rec (Eq. 3.6): squared error of prediction and target both multiplied by the mask, mean over all elements."""
    return F.mse_loss(pred * mask, target * mask)


@dataclass
class SceneResult:
    """What fitting one scene produced."""

    masks: torch.Tensor
    scores: list[float]
    ratios: list[float]
    mask_timestep: int
    log: list[dict[str, float]] = field(default_factory=list)


def _forward(parts: Any, latents: torch.Tensor, t: int, prompt: str) -> torch.Tensor:
    cond = parts.encode_prompt([prompt])
    return parts.unet(latents, torch.tensor([t]), encoder_hidden_states=cond).sample


def token_positions(tokenizer: Any, prompt: str, tokens: list[str]) -> list[int]:
    return [token_indices(tokenizer, prompt, tok)[0] for tok in tokens]


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
        _forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
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
    prompt = prompt_for(tokens, list(range(len(tokens))))
    store = AttentionStore(cross=True, resolutions={cross_res}, mode="last")
    install_store(parts.unet, store, cfg.fused_attention, cfg.detach_sot_kv)
    noise = torch.randn(z0.shape, generator=generator)
    positions = token_positions(parts.tokenizer, prompt, tokens)
    per_token: list[list[torch.Tensor]] = [[] for _ in tokens]
    with torch.no_grad():
        for t in cfg.score_timesteps:
            store.begin_step(t)
            _forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([int(t)])), int(t), prompt)
            cross = store.maps(cross_res, "cross")[0]
            for k, pos in enumerate(positions):
                per_token[k].append(cross[..., pos])
    small = F.interpolate(masks[:, None].float(), size=(cross_res, cross_res), mode="area")[:, 0]
    return [attention_score(per_token[k], small[k], cfg.top_n) for k in range(len(tokens))]


def train_scene(parts: Any, image: torch.Tensor, tokens: list[str], class_words: list[str], cfg: Any,
                params: list[torch.nn.Parameter], keep_rows: tuple[torch.Tensor, torch.Tensor] | None, seed: int,
                cross_res: int, self_res: int, advance: Any = None) -> SceneResult:
    """Algorithm 1 on one image (3, R, R) in [0, 1]: masks, scores, ratios, then ``cfg.steps`` training steps.

    ``params`` are the trainable tensors (cross-attention K/V, and the embedding table when tokens are trained);
    ``keep_rows`` = (table, original values) restores every non-placeholder row after each step (AdamW's weight
    decay would otherwise move them).
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
    attn_masks = F.interpolate(masks[:, None].float(), size=(cross_res, cross_res), mode="nearest")[:, 0]
    latent_side = z0.shape[-1]
    rec_masks = F.interpolate(masks[:, None].float(), size=(latent_side, latent_side), mode=cfg.rec_mask_interp,
                              **({"align_corners": False} if cfg.rec_mask_interp != "nearest" else {}))[:, 0].clamp(0, 1)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay, eps=1e-8)
    n_train = int(noise_scheduler.config.num_train_timesteps)
    if keep_rows is not None:
        fixed = torch.ones(keep_rows[0].shape[0], dtype=torch.bool)
        fixed[parts.tokenizer.convert_tokens_to_ids(tokens)] = False
    parts.unet.train()
    log = []
    for step in range(cfg.steps):
        subset = sample_subset(rng, ratios, cfg.omega)
        prompt = prompt_for(tokens, subset, class_words if cfg.class_nouns else None)
        t = int(torch.randint(0, n_train, (1,), generator=generator))
        noise = torch.randn(z0.shape, generator=generator)
        store.begin_step(t)
        pred = _forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
        cross = store.maps(cross_res, "cross")[0]
        positions = token_positions(parts.tokenizer, prompt, [tokens[i] for i in subset])
        l_attn = attention_loss(cross[..., positions].permute(2, 0, 1), attn_masks[subset], cfg.attn_loss)
        mask = rec_masks[subset].amax(0)[None, None]
        l_rec = masked_rec_loss(pred.float(), noise, mask)
        loss = l_rec + cfg.alpha * l_attn if len(subset) == 1 or cfg.use_rec_loss else l_attn
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if keep_rows is not None:
            with torch.no_grad():
                table, original = keep_rows
                table[fixed] = original[fixed]
        store.reset()
        log.append({"step": step, "concepts": len(subset), "l_rec": float(l_rec.detach()), "l_attn": float(l_attn.detach())})
        if advance is not None:
            advance()
    parts.unet.eval()
    return SceneResult(masks=masks, scores=scores, ratios=ratios, mask_timestep=mask_t, log=log)

"""Region-aware fine-tuning (thesis section 4.3.3, reference ``finetune_SD_attention.py`` at HEAD).

``L = L_rec + alpha * L_attn``: ``L_rec`` the epsilon MSE, ``L_attn`` the mean over the two placeholder tokens
and the batch of ``mse(minmax(A_C[tok]), target)`` on the cross-attention maps at ``ca_res`` (mean over heads and
layers of that side), with target ``M`` (bicubic to ``ca_res``, soft) for ``<lesion>`` and ``1 - M`` for
``<skin>``; applied at every sampled timestep. The whole UNet is trained; text encoder and VAE are frozen.
AdamW, constant learning rate after a linear warm-up, gradient-norm clipping.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def minmax_maps(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-map min-max normalisation of (B, h, w) maps to [0, 1]."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def attention_loss(ca: torch.Tensor, positions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``L_attn`` (Eq. 4.5 as implemented at HEAD).

    Args:
        ca: (B, h, w, K) cross-attention maps.
        positions: (B, 2) token positions of ``<lesion>`` and ``<skin>``.
        masks: (B, H, W) lesion masks, float in [0, 1].
    """
    b = torch.arange(ca.shape[0])
    side = ca.shape[1]
    target = F.interpolate(masks[:, None].float(), size=(side, side), mode="bicubic", align_corners=False)[:, 0]
    lesion = minmax_maps(ca[b, :, :, positions[:, 0]])
    skin = minmax_maps(ca[b, :, :, positions[:, 1]])
    return 0.5 * (F.mse_loss(lesion, target) + F.mse_loss(skin, 1 - target))


def finetune(parts: Any, images: torch.Tensor, masks: torch.Tensor, captions: Sequence[str | None],
             placeholder_ids: list[int], config: Any, seed: int,
             advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Fine-tune ``parts.unet`` in place.

    Args:
        parts: `SDComponents` (UNet trained; text encoder frozen).
        images: (N, 3, H, W) in [0, 1] at the training resolution; masks: (N, H, W) float/bool.
        captions: DermPrompt captions without prefix (None: prefix only).
        config: a `DiDGenConfig` (steps, batch_size, lr, warmup_steps, weight_decay, grad_clip, attn_weight,
            ca_res, prefix_only_rate, use_placeholders).
        seed: seeds noise, timesteps, batches and prompt draws.

    Returns:
        per-step log rows (``loss``, ``rec``, ``attn``).
    """
    from diffusers.optimization import get_scheduler

    from bench.diffusion.attention import AttentionStore, storing_processors

    from .prompts import placeholder_positions, training_prompt

    unet, codec, sched = parts.unet, parts.codec, parts.scheduler
    use_attn = config.attn_weight > 0 and config.use_placeholders
    store = AttentionStore(cross=True, self_attention=False, resolutions={config.ca_res}, mode="last", keep_grad=True)
    unet.set_attn_processor(storing_processors(unet, store if use_attn else None, fused=False))
    unet.train().requires_grad_(True)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay,
                            eps=1e-8)
    lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=config.warmup_steps)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    n_train = int(sched.config.num_train_timesteps)
    log: list[dict[str, float]] = []
    for step in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        prompts = [training_prompt(captions[int(i)], rng, config.prefix_only_rate, config.use_placeholders) for i in idx]
        ids = parts.token_ids(prompts)
        with torch.no_grad():
            cond = parts.text_encoder(input_ids=ids).last_hidden_state
            x0 = codec.encode(images[idx].to(parts.device))
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.randint(0, n_train, (len(idx),), generator=gen).to(x0.device)
        store.begin_step(0)
        eps = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        rec = F.mse_loss(eps.float(), noise.float())
        attn = torch.zeros((), device=rec.device)
        if use_attn:
            pos = torch.tensor([placeholder_positions(row.tolist(), placeholder_ids) for row in ids])
            attn = attention_loss(store.maps(config.ca_res, "cross"), pos, masks[idx].to(rec.device))
        loss = rec + config.attn_weight * attn
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
        opt.step()
        lr_sched.step()
        log.append({"step": step, "loss": float(loss.detach()), "rec": float(rec.detach()), "attn": float(attn.detach())})
        if advance is not None:
            advance()
    unet.eval().requires_grad_(False)
    store.reset()
    return log

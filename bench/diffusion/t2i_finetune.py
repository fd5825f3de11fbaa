"""Region-aware fine-tuning (thesis section 4.3.3, reference ``finetune_SD_attention.py`` at HEAD), shared by
DiDGen, the dual-branch method, SD-Finetune and DreamBooth (moved from ``methods/didgen/train.py``, issue 22).

``L = L_rec + alpha * L_attn``: ``L_rec`` the epsilon MSE, ``L_attn`` the mean over the two placeholder tokens
and the batch of ``mse(minmax(A_C[tok]), target)`` on the cross-attention maps at ``ca_res`` (mean over heads and
layers of that side), with target ``M`` (bicubic to ``ca_res``, soft) for ``<lesion>`` and ``1 - M`` for
``<skin>``; applied at every sampled timestep. The whole UNet is trained; text encoder and VAE are frozen.
AdamW, constant learning rate after a linear warm-up, gradient-norm clipping.

Optional prior preservation (DreamBooth, Ruiz et al. 2023; used by ``baselines/dreambooth``): each step also draws
``batch_size`` class images with their class prompts from `PriorData` (own random stream), runs them through the
UNet in the same batch and adds ``weight * L_prior``, the epsilon MSE on that half.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


class PriorData(NamedTuple):
    """Class images for the prior-preservation term.

    Attributes:
        images: (M, 3, H, W) at the training resolution, float in [0, 1] or uint8 in [0, 255].
        prompts: M class prompts, one per image.
        weight: lambda of ``L = L_rec + lambda * L_prior`` (DreamBooth: 1.0).
    """

    images: torch.Tensor
    prompts: Sequence[str]
    weight: float


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
             advance: Callable[..., None] | None = None,
             prompt_fn: Callable[[str | None, random.Random], str] | None = None,
             prior: PriorData | None = None) -> list[dict[str, float]]:
    """Fine-tune ``parts.unet`` in place.

    Args:
        parts: `SDComponents` (UNet trained; text encoder frozen).
        images: (N, 3, H, W) in [0, 1] at the training resolution; masks: (N, H, W) float/bool.
        captions: DermPrompt captions without prefix (None: prefix only).
        config: a `DiDGenConfig` (steps, batch_size, lr, warmup_steps, weight_decay, grad_clip, attn_weight,
            ca_res, prefix_only_rate, use_placeholders).
        seed: seeds noise, timesteps, batches and prompt draws.
        prompt_fn: builds the prompt of one training draw from its caption and the draw's random generator;
            None: `training_prompt` with the config's ``prefix_only_rate`` and ``use_placeholders``.
        prior: class images and prompts of the prior-preservation term (None: no such term, and the random
            streams are exactly those of a run without it).

    Returns:
        per-step log rows (``loss``, ``rec``, ``attn``; ``prior`` when ``prior`` is given).
    """
    from diffusers.optimization import get_scheduler

    from bench.diffusion.attention import AttentionStore, storing_processors

    from bench.diffusion.dermprompt import placeholder_positions, training_prompt

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
    prior_gen = torch.Generator().manual_seed(seed + 1) if prior is not None else None
    log: list[dict[str, float]] = []
    for step in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        if prompt_fn is None:
            prompts = [training_prompt(captions[int(i)], rng, config.prefix_only_rate, config.use_placeholders)
                       for i in idx]
        else:
            prompts = [prompt_fn(captions[int(i)], rng) for i in idx]
        ids = parts.token_ids(prompts)
        with torch.no_grad():
            cond = parts.text_encoder(input_ids=ids).last_hidden_state
            x0 = codec.encode(images[idx].to(parts.device))
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.randint(0, n_train, (len(idx),), generator=gen).to(x0.device)
        n_inst = len(idx)
        if prior is not None:
            x0, noise, t, cond = _with_prior_batch(parts, prior, prior_gen, x0, noise, t, cond, n_train)
        store.begin_step(0)
        eps = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        rec = F.mse_loss(eps[:n_inst].float(), noise[:n_inst].float())
        attn = torch.zeros((), device=rec.device)
        if use_attn:
            pos = torch.tensor([placeholder_positions(row.tolist(), placeholder_ids) for row in ids])
            attn = attention_loss(store.maps(config.ca_res, "cross")[:n_inst], pos, masks[idx].to(rec.device))
        loss = rec + config.attn_weight * attn
        prior_loss = None
        if prior is not None:
            prior_loss = F.mse_loss(eps[n_inst:].float(), noise[n_inst:].float())
            loss = loss + prior.weight * prior_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
        opt.step()
        lr_sched.step()
        row = {"step": step, "loss": float(loss.detach()), "rec": float(rec.detach()), "attn": float(attn.detach())}
        if prior_loss is not None:
            row["prior"] = float(prior_loss.detach())
        log.append(row)
        if advance is not None:
            advance()
    unet.eval().requires_grad_(False)
    store.reset()
    return log


def _with_prior_batch(parts: Any, prior: PriorData, gen: torch.Generator, x0: torch.Tensor, noise: torch.Tensor,
                      t: torch.Tensor, cond: torch.Tensor, n_train: int) -> tuple[torch.Tensor, ...]:
    """Append ``len(x0)`` class examples (own noise and timesteps from ``gen``) to the instance batch."""
    pidx = torch.randint(0, len(prior.images), (len(x0),), generator=gen)
    images = prior.images[pidx]
    images = images.float() / 255 if images.dtype == torch.uint8 else images
    with torch.no_grad():
        p_cond = parts.text_encoder(input_ids=parts.token_ids([prior.prompts[int(i)] for i in pidx])).last_hidden_state
        p_x0 = parts.codec.encode(images.to(parts.device)).to(x0)
    p_noise = torch.randn(p_x0.shape, generator=gen).to(x0)
    p_t = torch.randint(0, n_train, (len(pidx),), generator=gen).to(t.device)
    return (torch.cat([x0, p_x0]), torch.cat([noise, p_noise]), torch.cat([t, p_t]), torch.cat([cond, p_cond.to(cond)]))

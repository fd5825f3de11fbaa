"""MedDiff-FT's inpainting backbone, its masked fine-tuning (Eq. 1) and mask-guided generation (Eq. 2).

**Inpainting twin.** The code fine-tunes SD-1.5-inpainting, whose UNet reads ``cat([noisy latents (4), mask (1),
masked-image latents (4)])``. A text-to-image UNet (mini-sd, or an SD folder without inpainting weights) is turned
into one as diffusers' and runwayml's inpainting conversion does: a new UNet with ``2C + 1`` input channels, every
weight copied, and the ``C + 1`` extra input channels of ``conv_in`` zero-initialised, so before fine-tuning the
model predicts exactly what the text-to-image model predicts. Cost: ``(C + 1) * k * k * conv_in.out_channels`` more
parameters (mini-sd: 4 * 9 * 32 = 1 152 on 4.18 M, +0.03 %) and the same fraction more multiply-adds in the first
convolution only; everything after ``conv_in`` is unchanged. An SD folder whose UNet already has ``2C + 1`` inputs
(the paper's stable-diffusion-inpainting) is used as it is.

**Fine-tuning** (spec A.2): AdamW (0.9, 0.999, wd 1e-2, eps 1e-8), gradient clip 1, constant lr, horizontal flips
applied to image and mask together, the masked image (the region blanked to grey), uniform timesteps.
Loss ``masked`` (paper Eq. 1: the error weighted by the region mask M at the model resolution, normalised by the
mask area; with epsilon prediction the x-reconstruction error of Eq. 1 is the epsilon error times a per-timestep
factor absorbed in w_t) or ``plain`` (released code: epsilon MSE over the whole image).

**Generation** (spec A.3): per step the UNet sees ``cat([x_t, M, enc(b * (1 - M))])`` with classifier-free guidance
on the trigger prompt; ``blend="eq2"`` (paper Eq. 2) then keeps x_{t-1} inside M and puts the background b
forward-noised to the level of t-1 outside it (RePaint / blended-latent realisation of the undefined F);
``blend="none"`` is the code's 9-channel pipeline, which does no blending. ``paste_back`` pastes b outside M after
decoding.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def image_channels(unet: Any) -> int:
    """Channels C of the model space (the UNet's output channels)."""
    return int(unet.config.out_channels)


def is_inpainting(unet: Any) -> bool:
    """True when the UNet reads ``cat([x_t, mask, masked])`` (``2C + 1`` input channels)."""
    return int(unet.config.in_channels) == 2 * image_channels(unet) + 1


def inpainting_twin(unet: Any) -> Any:
    """An inpainting UNet from a text-to-image one: ``2C + 1`` inputs, weights copied, the extra ``conv_in`` input
    channels zero-initialised (the model's prediction is unchanged until fine-tuning). An inpainting UNet is
    returned as a trainable copy."""
    from diffusers import UNet2DConditionModel

    c = image_channels(unet)
    if is_inpainting(unet):
        twin = UNet2DConditionModel.from_config(unet.config)
        twin.load_state_dict(unet.state_dict())
        return twin.to(device=unet.device, dtype=unet.dtype)
    if int(unet.config.in_channels) != c:
        raise ValueError(f"UNet has {unet.config.in_channels} inputs and {c} outputs: neither a text-to-image "
                         f"({c}) nor an inpainting ({2 * c + 1}) UNet")
    twin = UNet2DConditionModel.from_config({**dict(unet.config), "in_channels": 2 * c + 1})
    state = dict(unet.state_dict())
    weight = state["conv_in.weight"]
    extra = torch.zeros(weight.shape[0], c + 1, *weight.shape[2:], dtype=weight.dtype, device=weight.device)
    state["conv_in.weight"] = torch.cat([weight, extra], dim=1)
    twin.load_state_dict(state)
    return twin.to(device=unet.device, dtype=unet.dtype)


def conversion_cost(unet: Any) -> dict[str, float]:
    """Extra parameters of `inpainting_twin` over ``unet`` (absolute and relative)."""
    c = image_channels(unet)
    w = unet.conv_in.weight
    extra = 0 if is_inpainting(unet) else (c + 1) * w.shape[0] * w.shape[2] * w.shape[3]
    total = sum(p.numel() for p in unet.parameters())
    return {"extra_parameters": float(extra), "relative": extra / total}


def model_inputs(codec: Any, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space mask (N, 1, h, w) (nearest) and masked-image encoding (N, C, h, w): the region set to 0 in
    [-1, 1] (grey, 0.5 in [0, 1]), as the code's ``image * (mask < 0.5)`` after normalisation does.

    Args:
        images: (N, C_img, H, W) in [0, 1]; masks: (N, H, W) bool/float, 1 = the region to generate.
    """
    m = masks.float()[:, None]
    masked = codec.encode(images * (1 - m) + 0.5 * m).float()
    small = F.interpolate(m, size=masked.shape[-2:], mode="nearest")
    return small, masked


def train_inpainter(parts: Any, unet: Any, images: torch.Tensor, masks: torch.Tensor, prompt: str, config: Any,
                    seed: int, advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Fine-tune the inpainting ``unet`` in place on (image, region mask) pairs.

    Args:
        parts: `SDComponents` (frozen text encoder, codec, training scheduler).
        unet: an inpainting UNet (`inpainting_twin`), trained.
        images: (N, 3, R, R) in [0, 1]; masks: (N, R, R) bool, the region the loss and the blanking cover.
        prompt: the trigger prompt of every pair.
        config: ``steps``, ``batch_size``, ``grad_accum``, ``lr``, ``weight_decay``, ``grad_clip``, ``loss``.
        seed: seeds batches, flips, noise and timesteps.
    """
    codec, sched = parts.codec, parts.scheduler
    unet.train().requires_grad_(True)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    with torch.no_grad():
        text = parts.encode_prompt([prompt]).float()
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    n_train = int(sched.config.num_train_timesteps)
    device = unet.device
    log: list[dict[str, float]] = []
    for step in range(config.steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.grad_accum):
            idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
            x, m = images[idx].to(device), masks[idx].to(device).float()
            flip = torch.tensor([rng.random() < 0.5 for _ in idx], device=device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            m = torch.where(flip[:, None, None], m.flip(-1), m)
            with torch.no_grad():
                x0 = codec.encode(x).float()
                m_small, masked = model_inputs(codec, x, m)
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            t = torch.randint(0, n_train, (len(idx),), generator=gen).to(device)
            noisy = sched.add_noise(x0, noise, t)
            pred = unet(torch.cat([noisy, m_small, masked], 1), t,
                        encoder_hidden_states=text.expand(len(idx), -1, -1)).sample.float()
            err = (pred - noise) ** 2
            if config.loss == "masked":
                weight = m_small.expand_as(err)
                loss = (err * weight).sum() / weight.sum().clamp_min(1.0)
            else:
                loss = err.mean()
            (loss / config.grad_accum).backward()
            total += float(loss.detach()) / config.grad_accum
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        log.append({"step": step, "loss": total})
        if advance is not None:
            advance()
    unet.eval().requires_grad_(False)
    return log


@torch.no_grad()
def inpaint(parts: Any, unet: Any, backgrounds: torch.Tensor, masks: torch.Tensor, prompt: str, seeds: Sequence[int],
            sampler: str = "ddim", steps: int = 50, guidance_scale: float = 7.5, blend: str = "eq2",
            paste_back: bool = False) -> torch.Tensor:
    """Generate inside ``masks`` on ``backgrounds``.

    Args:
        backgrounds: (N, 3, R, R) in [0, 1]; masks: (N, R, R) bool (the region to generate).
        seeds: one noise seed per image.
        blend: ``eq2`` (paper Eq. 2: outside M, the background noised to the current level) or ``none`` (code).
        paste_back: paste the background outside M after decoding.

    Returns:
        images (N, 3, R, R) in [0, 1].
    """
    from bench.diffusion.sampling import make_scheduler

    codec = parts.codec
    device = unet.device
    backgrounds, m = backgrounds.to(device), masks.to(device).float()
    m_small, masked = model_inputs(codec, backgrounds, m)
    bg_latent = codec.encode(backgrounds).float()
    shape = bg_latent.shape[1:]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    latents = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
    bg_noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
    sched = make_scheduler(sampler, parts.scheduler)
    sched.set_timesteps(steps, device=device)
    latents = latents * sched.init_noise_sigma
    text = parts.encode_prompt([prompt]).float().expand(len(latents), -1, -1)
    use_cfg = guidance_scale != 1.0
    if use_cfg:
        uncond = parts.encode_prompt([""]).float().expand(len(latents), -1, -1)
    timesteps = list(sched.timesteps)
    for k, t in enumerate(timesteps):
        x = sched.scale_model_input(latents, t)
        inp = torch.cat([x, m_small, masked], 1)
        if use_cfg:
            out = unet(torch.cat([inp, inp]), t, encoder_hidden_states=torch.cat([uncond, text])).sample.float()
            eps_u, eps_c = out.chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        else:
            eps = unet(inp, t, encoder_hidden_states=text).sample.float()
        latents = sched.step(eps, t, latents).prev_sample
        if blend == "eq2":
            if k + 1 < len(timesteps):
                known = sched.add_noise(bg_latent, bg_noise, timesteps[k + 1].reshape(1).expand(len(latents)))
            else:
                known = bg_latent
            latents = m_small * latents + (1 - m_small) * known
        elif blend != "none":
            raise ValueError(f"unknown blend '{blend}'; valid: eq2, none")
    images = codec.decode(latents).float().clamp(0, 1)
    if paste_back:
        images = m[:, None] * images + (1 - m[:, None]) * backgrounds
    return images.cpu()

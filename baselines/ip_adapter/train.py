"""IP-Adapter training (Ye et al. 2023, Sec. 3.3; reference ``tencent-ailab/IP-Adapter`` ``tutorial_train.py``).

Everything is frozen except the image projection and the ``to_k_ip``/``to_v_ip`` of every cross-attention layer
(and, with ``mask_input=controlnet``, the mask ControlNet). Each step reconstructs the training images themselves:
``L = || eps - eps_theta(x_t, t, c_text, c_image) ||^2`` with ``c_image`` the frozen encoder's embedding of the
*same* image (with ``mask_input=embed``, concatenated with that of its mask). Classifier-free guidance is learnt by
dropping, per example and from one uniform draw ``r``, the image embedding (``r < p_image``: zeros), the text
(next ``p_text``: the empty prompt) or both (next ``p_both``), 0.05 each in the original. AdamW, constant lr.
A mask ControlNet, when given, is trained in the same steps as ``HanhaiNotHai/AquaLoRA_ControlNet``
``train/train_controlnet_ipadapter.py`` does: its residuals enter the UNet call, its parameters are a second AdamW
group with their own learning rate.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def drop_masks(r: torch.Tensor, image_rate: float, text_rate: float, both_rate: float) -> tuple[torch.Tensor, ...]:
    """Which examples lose their image embedding and which their text, from uniform draws ``r`` (B,).

    The bands are ``[0, image_rate)`` image only, then ``text_rate`` text only, then ``both_rate`` both, as the
    original (``rand_num < 0.05``, ``< 0.1``, ``< 0.15``).

    Returns:
        (drop_image, drop_text), bool (B,).
    """
    a, b, c = image_rate, image_rate + text_rate, image_rate + text_rate + both_rate
    drop_image = (r < a) | ((r >= b) & (r < c))
    drop_text = (r >= a) & (r < c)
    return drop_image, drop_text


def train_adapter(parts: Any, embeds: torch.Tensor, images: torch.Tensor, config: Any, seed: int,
                  advance: Callable[..., None] | None = None, controlnet: Any = None,
                  conditions: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Train the IP-Adapter installed on ``parts.unet`` in place (and, if given, a ControlNet jointly).

    Args:
        parts: `SDComponents` whose UNet carries an adapter (`install_ip_adapter`); UNet, text encoder and codec
            stay frozen.
        embeds: (N, D) frozen image-encoder embeddings of the training images (the image prompts).
        images: (N, 3, H, W) in [0, 1] at the training resolution (the reconstruction targets).
        config: an `IPAdapterConfig` (steps, batch_size, lr, weight_decay, prompt, image_drop_rate,
            text_drop_rate, both_drop_rate; with a ControlNet also controlnet_lr, controlnet_grad_clip).
        seed: seeds batches, noise, timesteps and drops.
        advance: progress callback, called once per step.
        controlnet: a `ControlNetModel` built from the plain UNet (`bench.diffusion.controlnet.build_controlnet`),
            trained in the same steps: it sees the noisy input, the step's (possibly dropped) text and the pair's
            conditioning image, and its residuals enter the UNet call; its parameters form a second AdamW group
            with ``controlnet_lr`` and are clipped to ``controlnet_grad_clip`` (the adapter's are not clipped, as
            the original IP-Adapter). None: the plain adapter, exactly as before.
        conditions: (N, C, H, W) conditioning images of the pairs (`bench.diffusion.controlnet.mask_condition`),
            with ``controlnet``.

    Returns:
        per-step log rows (``step``, ``loss``, ``dropped_image``, ``dropped_text``).
    """
    from bench.diffusion.controlnet import controlnet_residuals

    from .adapter import adapter_parameters

    if controlnet is not None and (conditions is None or len(conditions) != len(images)):
        raise ValueError("joint ControlNet training needs one conditioning image per training image")
    unet, codec, sched = parts.unet, parts.codec, parts.scheduler
    unet.requires_grad_(False)
    params = adapter_parameters(unet)
    for p in params:
        p.requires_grad_(True)
    if controlnet is None:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        control_params: list[Any] = []
    else:
        controlnet.train().requires_grad_(True)
        control_params = list(controlnet.parameters())
        opt = torch.optim.AdamW([{"params": params, "lr": config.lr},
                                 {"params": control_params, "lr": config.controlnet_lr}],
                                weight_decay=config.weight_decay)
    with torch.no_grad():
        text = parts.encode_prompt([config.prompt]).float()
        empty = parts.encode_prompt([""]).float()
    gen = torch.Generator().manual_seed(seed)
    n_train = int(sched.config.num_train_timesteps)
    device = parts.device
    embeds = embeds.float().to(device)
    logger.info("IP-Adapter training: %d images, %d steps, batch %d, lr %g, %d trainable parameters, device %s%s",
                len(images), config.steps, config.batch_size, config.lr, sum(p.numel() for p in params), device,
                "" if controlnet is None else f"; jointly a ControlNet, lr {config.controlnet_lr:g}, "
                f"{sum(p.numel() for p in control_params)} parameters")
    log: list[dict[str, float]] = []
    for step in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        with torch.no_grad():
            x0 = codec.encode(images[idx].to(device)).float()
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.randint(0, n_train, (len(idx),), generator=gen).to(device)
        drop_image, drop_text = drop_masks(torch.rand(len(idx), generator=gen), config.image_drop_rate,
                                           config.text_drop_rate, config.both_drop_rate)
        image_embeds = torch.where(drop_image.to(device)[:, None], torch.zeros_like(embeds[idx]), embeds[idx])
        context = torch.where(drop_text.to(device)[:, None, None], empty, text)
        noisy = sched.add_noise(x0, noise, t).to(unet.dtype)
        residuals = ({} if controlnet is None else
                     controlnet_residuals(controlnet, conditions[idx].to(device))(noisy, t, context.to(unet.dtype)))
        eps = unet(noisy, t, encoder_hidden_states=context.to(unet.dtype),
                   added_cond_kwargs={"image_embeds": [image_embeds[:, None].to(unet.dtype)]}, **residuals).sample
        loss = F.mse_loss(eps.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if controlnet is not None:
            torch.nn.utils.clip_grad_norm_(control_params, config.controlnet_grad_clip)
        opt.step()
        log.append({"step": step, "loss": float(loss.detach()), "dropped_image": int(drop_image.sum()),
                    "dropped_text": int(drop_text.sum())})
        if advance is not None:
            advance()
    for p in params:
        p.requires_grad_(False)
    if controlnet is not None:
        controlnet.eval().requires_grad_(False)
    return log

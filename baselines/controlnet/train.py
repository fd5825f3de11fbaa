"""Training a ControlNet on (image, mask) pairs with the backbone frozen (thesis ch. 4 / ch. 5 ControlNet baseline).

The recipe of diffusers' ``examples/controlnet/train_controlnet.py``, written for this package: the UNet, text
encoder and VAE are frozen and only the ControlNet is optimised; each step draws a batch, encodes the images,
adds noise at uniform random timesteps, runs the ControlNet on the noisy latents with the conditioning images and
feeds its residuals to the UNet, and minimises the MSE between the UNet's prediction and the target (the noise for
epsilon models such as SD 2.1-base; the velocity for v-prediction models). A caption is replaced by the empty
prompt with probability ``empty_prompt_rate`` (the script's ``proportion_empty_prompts``). AdamW with a constant
learning rate after an optional linear warm-up, gradient-norm clipping.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def train_controlnet(parts: Any, controlnet: Any, images: torch.Tensor, conditions: torch.Tensor, prompt: str,
                     config: Any, seed: int, advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Train ``controlnet`` in place; ``parts`` stays frozen.

    Args:
        parts: `SDComponents` of the backbone (UNet, text encoder, codec, training scheduler).
        controlnet: a `ControlNetModel` built from ``parts.unet`` (`model.build_controlnet`).
        images: (N, 3, H, W) float in [0, 1] at the training resolution.
        conditions: (N, C, H, W) conditioning images in [0, 1] (`model.mask_condition`), same H, W.
        prompt: the training caption of every pair.
        config: a `ControlNetConfig` (steps, batch_size, lr, warmup_steps, weight_decay, grad_clip,
            empty_prompt_rate).
        seed: seeds batches, noise, timesteps and empty-prompt draws.
        advance: progress callback, called once per step.

    Returns:
        per-step log rows (``step``, ``loss``).
    """
    from diffusers.optimization import get_scheduler

    if len(images) != len(conditions) or images.shape[-2:] != conditions.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and conditioning images {tuple(conditions.shape)} differ")
    unet, codec, sched = parts.unet, parts.codec, parts.scheduler
    unet.eval().requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    controlnet.train().requires_grad_(True)
    params = [p for p in controlnet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=config.warmup_steps)
    with torch.no_grad():
        text = parts.encode_prompt([prompt, ""])  # the text encoder is frozen: two states serve every step
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    n_train = int(sched.config.num_train_timesteps)
    v_prediction = sched.config.get("prediction_type", "epsilon") == "v_prediction"
    device = parts.device
    log: list[dict[str, float]] = []
    for step in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        empty = [rng.random() < config.empty_prompt_rate for _ in idx] if config.empty_prompt_rate > 0 else \
            [False] * len(idx)
        context = text[torch.tensor([1 if e else 0 for e in empty])]
        with torch.no_grad():
            x0 = codec.encode(images[idx].to(device)).float()
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.randint(0, n_train, (len(idx),), generator=gen).to(device)
        noisy = sched.add_noise(x0, noise, t)
        down, mid = controlnet(noisy, t, encoder_hidden_states=context,
                               controlnet_cond=conditions[idx].to(device=device, dtype=controlnet.dtype),
                               return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        target = sched.get_velocity(x0, noise, t) if v_prediction else noise
        loss = F.mse_loss(pred.float(), target.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        lr_sched.step()
        log.append({"step": step, "loss": float(loss.detach())})
        if advance is not None:
            advance()
    controlnet.eval().requires_grad_(False)
    return log

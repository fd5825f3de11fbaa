"""StyleID (Chung, Hyun & Heo, "Style Injection in Diffusion: A Training-free Approach for Adapting Large-scale
Diffusion Models for Style Transfer", CVPR 2024) on a backbone UNet: Stage 2 of the ControlNet + StyleID baseline.

Per batch of (content, style) image pairs, text-free (the empty prompt, no classifier-free guidance):

1. DDIM-invert the content images over the ``steps`` schedule, recording the queries of the injected decoder
   self-attention layers at every step (`StyleKV` mode ``"record_queries"``).
2. DDIM-invert the style images over the same schedule, recording those layers' keys and values (``"record"``).
3. Start from the content's inverted latent, AdaIN-normalised per channel to the style's inverted latent
   (`bench.diffusion.style.adain`; ``adain_init``).
4. DDIM-denoise; at the step of timestep t every injected layer attends with
   ``q_hat = gamma * q_content(t) + (1 - gamma) * q_current`` (times the temperature ``tau``) over the style's
   K/V of timestep t (inversion step ``T - 1 - i`` at sampling iteration ``i``: the inversion runs the timesteps
   in reverse, so both see the UNet at the same t, as StyleID keys its features by t).
5. Decode.

The pieces (`StyleKV`, `injecting_processors`, `decoder_self_attention_layers`, `adain`, `ddim_invert`,
`ddim_scheduler_for_inversion`) are `bench.diffusion`'s; the official code was read, not copied.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def styleid_transfer(parts: Any, content: torch.Tensor, style: torch.Tensor, steps: int, inject_layers: int | None,
                     gamma: float, tau: float, adain_init: bool = True) -> torch.Tensor:
    """Stylised images (N, 3, H, W) in [0, 1]: ``content`` re-drawn with ``style``'s self-attention K/V.

    Args:
        parts: `SDComponents` of the backbone (UNet, codec, noise schedule, text encoder for the empty prompt).
        content: content images (N, 3, H, W) in [0, 1] (Stage 1's ControlNet samples).
        style: style images (N, 3, H, W) in [0, 1], one per content image (the conditions' references).
        steps: DDIM steps of the two inversions and of the stylised denoising.
        inject_layers: the last N decoder self-attention layers are injected (None: all; 0: none, which leaves the
            AdaIN-initialised DDIM reconstruction of the content).
        gamma: query preservation (StyleID: 0.75).
        tau: attention temperature of the injected layers (StyleID: 1.5).
        adain_init: AdaIN the initial latent to the style's (StyleID: on).

    The UNet's attention processors are restored afterwards (Stage 1 of the next batch sees the plain UNet).
    """
    from bench.diffusion.sampling import ddim_invert, ddim_scheduler_for_inversion
    from bench.diffusion.style import StyleKV, adain, decoder_self_attention_layers, injecting_processors

    if content.shape != style.shape:
        raise ValueError(f"content {tuple(content.shape)} and style {tuple(style.shape)} images differ in shape")
    unet, device = parts.unet, parts.device
    n = content.shape[0]
    kv = StyleKV(decoder_self_attention_layers(unet, inject_layers), gamma=gamma, temperature=tau)
    saved = dict(unet.attn_processors)
    # explicit softmax on CPU (faster for small heads, as the mini profiles use it), fused SDPA elsewhere
    unet.set_attn_processor(injecting_processors(unet, None, kv, fused=device.type != "cpu"))
    try:
        with torch.no_grad():
            empty = parts.encode_prompt([""]).float().expand(n, -1, -1)
            z_content = parts.codec.encode(content.to(device)).float()
            z_style = parts.codec.encode(style.to(device)).float()
        kv.mode = "record_queries"
        z_content = ddim_invert(unet, empty, parts.scheduler, z_content, steps=steps)
        kv.mode = "record"
        z_style = ddim_invert(unet, empty, parts.scheduler, z_style, steps=steps)
        kv.mode = "off"
        x = adain(z_content, z_style) if adain_init else z_content
        sched = ddim_scheduler_for_inversion(parts.scheduler)
        sched.set_timesteps(steps, device=device)
        n_iter = len(sched.timesteps)
        if kv.layers and kv.recorded_steps != n_iter:
            raise RuntimeError(f"recorded K/V for {kv.recorded_steps} steps but sampling has {n_iter}")
        rows = list(range(n))
        with torch.no_grad():
            for i, t in enumerate(sched.timesteps):
                if kv.layers:
                    kv.plan(n_iter - 1 - i, style_rows=rows, query_rows=rows, kv_rows=rows, recorded_queries=True)
                eps = unet(sched.scale_model_input(x, t), t, encoder_hidden_states=empty).sample.float()
                kv.mode = "off"
                x = sched.step(eps, t, x).prev_sample
            return parts.codec.decode(x).clamp(0, 1)
    finally:
        kv.reset()
        unet.set_attn_processor(saved)

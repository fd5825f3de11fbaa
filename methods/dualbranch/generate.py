"""Stage II and III of the dual-branch generator (thesis section 5.3, spec ch5 sections 3.3-3.4).

Per batch of conditions (style reference image, augmented layout mask, prompt):

1. DDIM inversion of the references (empty prompt, no CFG) over the sampling schedule, keeping the per-step latents
   ``z_t^style`` and recording the self-attention K/V of the injected decoder layers at every step
   (``kv_source="inversion"``, thesis); or recording them while DDIM-reconstructing from the inverted ``z_T``
   (``kv_source="reconstruction"``).
2. ``z_T = z_T^style`` (``init="inversion"``, thesis) or seeded Gaussian noise (``init="noise"``).
3. Joint phase (iterations ``i < split_fraction * T``): one trajectory; per iteration one conditional UNet call and
   one gradient step ``z <- z - eta_i grad[lambda_attn (L_CA + L_SA) + lambda_style L_style(z, z_t^style)]``
   (Eq. 5.9), then the classifier-free-guidance DDIM step.
4. Split: the layout branch keeps the trajectory with layout-only guidance (Eq. 5.10); the style branch starts from
   the same latent and, in every UNet call, its injected self-attention layers attend with the layout branch's
   queries (blended by ``query_gamma``, sharpened by ``attn_temperature``) over the recorded style K/V of the same
   step. Both branches go through the UNet as one batch ``[layout, style]`` (x2 under CFG).
5. Output: the style branch decoded at t = 0 is the image; the mask is read out of the layout branch's conditional
   attention maps at the last iteration (``(A_S)^tau @ A_C``, Otsu, closing; `attention_mask_readout`).

``branches="single"`` is the thesis' single-branch ablation: no split; after ``split_fraction`` the one trajectory
gets layout guidance and K/V injection (its own queries) together, and gives both image and mask.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _layout_guidance_loss(store: Any, masks: torch.Tensor, lesion_pos: Sequence[int], eots: Sequence[int],
                          config: Any) -> torch.Tensor:
    """Sum over the batch of ``L_CA + L_SA`` (each element takes the step it would take alone)."""
    from bench.diffusion.layout import layout_loss

    total = torch.zeros(())
    for b in range(masks.shape[0]):
        total = total + layout_loss(store, masks[b], int(lesion_pos[b]), int(eots[b]), ca_res=config.ca_res,
                                    sa_res=config.sa_res, use_ca=config.ca_guidance, use_sa=config.sa_guidance,
                                    softmax_scale=config.softmax_scale, smooth=config.gaussian_smoothing,
                                    batch_index=b)
    return total


def _record_style(parts: Any, kv: Any, store: Any, references: torch.Tensor, empty: torch.Tensor, sched: Any,
                  steps: int, source: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Invert the references; record K/V. Returns z_T and the inversion latents per sampling iteration
    (``z_style[i]`` is the latent at the timestep of sampling iteration ``i``)."""
    from bench.diffusion.sampling import ddim_invert

    unet = parts.unet
    store.active = False
    with torch.no_grad():
        z0 = parts.codec.encode(references).float()
    kv.reset()
    kv.mode = "record" if source == "inversion" else "off"
    z_t, trajectory = ddim_invert(unet, empty.expand(z0.shape[0], -1, -1), parts.scheduler, z0, steps=steps,
                                  return_trajectory=True)
    if source == "reconstruction":
        kv.mode = "record"
        x = z_t
        with torch.no_grad():
            for t in sched.timesteps:
                eps = unet(sched.scale_model_input(x, t), t, encoder_hidden_states=empty.expand(x.shape[0], -1, -1))
                x = sched.step(eps.sample.float(), t, x).prev_sample
    elif source != "inversion":
        raise ValueError(f"kv_source must be 'inversion' or 'reconstruction', got '{source}'")
    kv.mode = "off"
    store.active = True
    n_iter = len(sched.timesteps)
    return z_t, [trajectory[n_iter - i] for i in range(n_iter)]


def generate_dual(parts: Any, prompts: Sequence[str], masks: Sequence[torch.Tensor], references: torch.Tensor,
                  seeds: Sequence[int], placeholder_ids: list[int], config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) in [0, 1] (style branch) and read-out masks (N, H, W) bool (layout branch).

    Args:
        parts: `SDComponents` (the Stage I model).
        prompts: one prompt per pair, starting with the placeholder prefix.
        masks: target layout masks (H', W') per pair (bool or float), already augmented.
        references: style images (N, 3, H, W) in [0, 1] at the generation resolution.
        seeds: initial-noise seed per pair (used with ``init="noise"``).
        placeholder_ids: token ids of ``<lesion>``/``<skin>``.
        config: a `DualBranchConfig`.
    """
    from bench.diffusion.attention import AttentionStore
    from bench.diffusion.dermprompt import placeholder_positions
    from bench.diffusion.layout import attention_mask_readout, guidance_step_sizes, token_softmax
    from bench.diffusion.sampling import cfg_eps_recording, ddim_scheduler_for_inversion, latent_guidance_step
    from bench.diffusion.style import StyleKV, decoder_self_attention_layers, injecting_processors, style_statistics_loss

    c = config
    unet = parts.unet
    n = len(prompts)
    store = AttentionStore(cross=True, self_attention=True, resolutions={c.ca_res, c.sa_res}, mode="last",
                           keep_grad=True)
    kv = StyleKV(decoder_self_attention_layers(unet, c.inject_layers), gamma=c.query_gamma,
                 temperature=c.attn_temperature)
    unet.set_attn_processor(injecting_processors(unet, store, kv, fused=False))
    sched = ddim_scheduler_for_inversion(parts.scheduler)
    sched.set_timesteps(c.sample_steps)
    n_iter = len(sched.timesteps)

    ids = parts.token_ids(list(prompts))
    lesion_pos = [placeholder_positions(row.tolist(), placeholder_ids)[0] for row in ids]
    eots = [len(parts.tokenizer(p, truncation=True, max_length=parts.tokenizer.model_max_length).input_ids) - 1
            for p in prompts]
    with torch.no_grad():
        cond = parts.text_encoder(input_ids=ids).last_hidden_state.float()
        uncond = parts.encode_prompt([""]).float()

    # 1. style inversion and K/V record
    z_T, z_style = _record_style(parts, kv, store, references, uncond, sched, c.sample_steps, c.kv_source)
    cached = kv.recorded_steps
    if kv.layers and cached != n_iter:
        raise RuntimeError(f"recorded K/V for {cached} steps but sampling has {n_iter}")

    # 2. initial latent
    if c.init == "inversion":
        layout = z_T.clone()
    else:
        shape = tuple(z_T.shape[1:])
        layout = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        layout = layout * sched.init_noise_sigma
    style: torch.Tensor | None = None
    target = torch.stack([m.float() for m in masks])
    etas = guidance_step_sizes(n_iter, c.eta, tuple(c.eta_range), c.guidance_fraction)
    split = int(c.split_fraction * n_iter)
    readout_at = n_iter - 1 if c.readout_step == "last" else max(n_iter - 2, 0)
    kept: dict[str, torch.Tensor] = {}
    rows = list(range(n))
    for i, t in enumerate(sched.timesteps):
        after_split = i >= split
        if c.branches == "dual" and after_split and style is None:
            style = layout.clone()
        # 3./4. latent guidance of the layout trajectory
        use_style_loss = c.lambda_style > 0 and (not after_split or c.style_loss_after_split)
        use_layout = c.lambda_attn > 0 and (c.ca_guidance or c.sa_guidance)
        if etas[i] > 0 and (use_layout or use_style_loss):
            style_target = z_style[i] if not after_split or style is None else style

            def loss_fn(z: torch.Tensor) -> torch.Tensor:
                kv.mode = "off"
                total = torch.zeros(())
                if use_layout:
                    store.begin_step(t)
                    unet(sched.scale_model_input(z, t), t, encoder_hidden_states=cond)
                    total = total + c.lambda_attn * _layout_guidance_loss(store, target, lesion_pos, eots, c)
                if use_style_loss:
                    total = total + c.lambda_style * style_statistics_loss(z, style_target)
                return total

            layout, _ = latent_guidance_step(layout, loss_fn, etas[i])
        # classifier-free-guided DDIM step, with K/V injection on the style rows
        if style is not None:
            x = torch.cat([layout, style])
            if kv.layers:
                kv.plan(n_iter - 1 - i if c.kv_source == "inversion" else i,
                        style_rows=[n + r for r in rows] + [3 * n + r for r in rows],
                        query_rows=rows + [2 * n + r for r in rows], kv_rows=rows + rows)
        else:
            x = layout
            if c.branches == "single" and after_split and kv.layers:
                kv.plan(n_iter - 1 - i if c.kv_source == "inversion" else i, style_rows=list(range(2 * n)),
                        query_rows=list(range(2 * n)), kv_rows=rows + rows)
        x_cond = torch.cat([cond, cond]) if style is not None else cond
        eps = cfg_eps_recording(unet, x, t, x_cond, uncond, c.guidance_scale, sched, store)
        kv.mode = "off"
        if i == readout_at:
            kept = {"ca": store.maps(c.ca_res, "cross")[:n].detach(), "sa": store.maps(c.sa_res, "self")[:n].detach()}
        x = sched.step(eps, t, x).prev_sample
        layout, style = (x[:n], x[n:]) if style is not None else (x, None)

    with torch.no_grad():
        images = parts.codec.decode(style if style is not None else layout).clamp(0, 1)
    side = images.shape[-1]
    out_masks = []
    n_sa = c.sa_res * c.sa_res
    for b in range(n):
        tok = token_softmax(kept["ca"][b], eots[b], scale=c.softmax_scale, smooth=c.gaussian_smoothing)
        out_masks.append(attention_mask_readout(kept["sa"][b].reshape(n_sa, n_sa), tok[..., lesion_pos[b] - 1],
                                                out_size=side, tau=c.tau, closing_kernel=c.closing_kernel,
                                                largest_component=c.largest_component))
    store.reset()
    kv.reset()
    return images, torch.stack(out_masks)

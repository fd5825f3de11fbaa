"""Training-free lesion-mask pair generation (thesis section 4.3.4, reference ``LesionMaskDiffPipeline.py``).

Per sampling iteration ``i`` with step size ``eta_i > 0`` (the first half, `guidance_step_sizes`): one UNet call on
the conditional prompt only, ``L_CA`` on the ``<lesion>`` map at ``ca_res`` plus ``L_SA`` at ``sa_res``, one gradient
step on the latent; then the ordinary classifier-free-guidance step from the moved latent (the generic loop
`bench.diffusion.sampling.guided_sample`, shared with the ZestGuide and Attn-Refocus baselines).
At the read-out iteration (the last, as the thesis says; or the second-to-last, what the code's index 49 is with
PNDM) the mask is ``close(Otsu((A_S)^tau @ up(A_C)))`` from that iteration's conditional maps.
Conditions are processed in batches; each element has its own mask, and the loss is summed over the batch so that
every element takes the step it would take alone.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _batch_layout_loss(store: Any, masks: torch.Tensor, lesion_pos: torch.Tensor, eots: list[int], config: Any) -> torch.Tensor:
    from bench.diffusion.layout import ca_layout_loss, resize_mask_to, sa_layout_loss, token_softmax

    total = torch.zeros(())
    if config.ca_guidance:
        ca = store.maps(config.ca_res, "cross")
        for b in range(ca.shape[0]):
            tok = token_softmax(ca[b], eots[b], scale=config.softmax_scale, smooth=config.gaussian_smoothing)
            total = total + ca_layout_loss(tok[..., int(lesion_pos[b]) - 1], resize_mask_to(masks[b], config.ca_res))
    if config.sa_guidance:
        sa = store.maps(config.sa_res, "self")
        n = config.sa_res * config.sa_res
        total = total + sa_layout_loss(sa.reshape(-1, n, n), resize_mask_to(masks, config.sa_res)) * sa.shape[0]
    return total


from bench.diffusion.dermprompt import PromptInputs, encode_prompts  # noqa: E402,F401  (moved, issue 22)


def generate_pairs(parts: Any, prompts: Sequence[str], masks: Sequence[torch.Tensor | None], seeds: Sequence[int],
                   placeholder_ids: list[int], config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) in [0, 1] and read-out masks (N, H, W) bool.

    Args:
        prompts: one prompt per pair, each starting with the prefix (placeholders at the prefix positions).
        masks: condition masks (H', W') per pair, or None for unconditioned pairs (no guidance for that element).
        seeds: initial-noise seed per pair (the pair is the same whatever batch it is generated in).
        config: a `DiDGenConfig`.
    """
    from bench.diffusion.attention import AttentionStore, storing_processors
    from bench.diffusion.layout import attention_mask_readout, guidance_step_sizes, token_softmax
    from bench.diffusion.sampling import guided_sample, make_scheduler, seeded_noise

    unet = parts.unet
    store = AttentionStore(cross=True, self_attention=True, resolutions={config.ca_res, config.sa_res}, mode="last",
                           keep_grad=True)
    unet.set_attn_processor(storing_processors(unet, store, fused=False))
    sched = make_scheduler(config.sampler, parts.scheduler)
    sched.set_timesteps(config.sample_steps)
    n_iter = len(sched.timesteps)
    etas = guidance_step_sizes(n_iter, config.eta, tuple(config.eta_range), config.guidance_fraction)
    readout_at = n_iter - 1 if config.readout_step == "last" else max(n_iter - 2, 0)

    enc = encode_prompts(parts, prompts, placeholder_ids)
    lesion_pos, eots = enc.positions[:, 0], enc.eots
    shape = parts.sample_shape(1)[1:]
    latents = seeded_noise(shape, seeds, sched.init_noise_sigma)
    guided = [b for b, m in enumerate(masks) if m is not None]
    side = shape[-1] * parts.codec.factor
    mask_stack = {b: masks[b].float() for b in guided}

    def loss_fn(store: Any, rows: torch.Tensor, i: int) -> torch.Tensor:
        sub_masks = torch.stack([mask_stack[int(b)] for b in rows])
        return _batch_layout_loss(store, sub_masks, lesion_pos[rows], [eots[int(b)] for b in rows], config)

    kept: dict[str, torch.Tensor] = {}

    def keep_readout(i: int, t: Any) -> None:
        if i == readout_at:
            kept["ca"] = store.maps(config.ca_res, "cross").detach()
            kept["sa"] = store.maps(config.sa_res, "self").detach()

    use_loss = loss_fn if (config.ca_guidance or config.sa_guidance) else None
    latents = guided_sample(unet, sched, enc.cond, enc.uncond, latents, config.guidance_scale, store, use_loss, etas,
                            guided=guided, after_predict=keep_readout)
    with torch.no_grad():
        images = parts.codec.decode(latents).clamp(0, 1)
    out_masks = []
    n = config.sa_res * config.sa_res
    for b in range(len(prompts)):
        tok = token_softmax(kept["ca"][b], eots[b], scale=config.softmax_scale, smooth=config.gaussian_smoothing)
        out_masks.append(attention_mask_readout(kept["sa"][b].reshape(n, n), tok[..., int(lesion_pos[b]) - 1],
                                                out_size=side, tau=config.tau, closing_kernel=config.closing_kernel,
                                                largest_component=config.largest_component))
    store.reset()
    return images, torch.stack(out_masks)

"""Sampling with classifier-free guidance over diffusers schedulers, DDIM inversion and latent guidance steps.

Also re-exports the token utilities (`bench.diffusion.tokens`) and the fine-tuning helpers
(`bench.diffusion.finetune`), so methods import one module.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bench.diffusion.finetune import add_lora, attention_parameters, lora_state_dict, trainable_parameters
from bench.diffusion.tokens import PlaceholderTokens, add_placeholder_tokens, token_indices

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULERS", "UnetKwargsFn", "make_scheduler", "sample", "ddim_invert", "latent_guidance_step",
           "seeded_noise", "guided_sample", "GuidanceLoss",
           "add_placeholder_tokens", "PlaceholderTokens", "token_indices", "add_lora", "attention_parameters",
           "lora_state_dict", "trainable_parameters"]

#: Sampler names -> diffusers scheduler classes.
SCHEDULERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "pndm": "PNDMScheduler",
              "dpm-solver": "DPMSolverMultistepScheduler"}

#: A sampling callback: ``callback(step_index, timestep, latents) -> latents or None``. Returning a tensor
#: replaces the latents before the scheduler step (this is where attention guidance moves them).
Callback = Callable[[int, Any, Any], Any]

#: Per-step extra UNet arguments: ``unet_kwargs_fn(model_input, timestep, context) -> dict``, called with the UNet's
#: exact inputs (batch ``[uncond, cond]`` under classifier-free guidance); its result is merged over ``unet_kwargs``.
#: ControlNet residuals (``down_block_additional_residuals``, ``mid_block_additional_residual``) come this way.
UnetKwargsFn = Callable[[Any, Any, Any], dict]


def make_scheduler(name: str, config: dict[str, Any] | Any) -> Any:
    """A diffusers scheduler of kind ``name`` (``ddpm``, ``ddim``, ``pndm``, ``dpm-solver``) sharing the
    model's training noise schedule (``config``: a scheduler or its config). PNDM skips the Runge-Kutta warm-up
    steps (``skip_prk_steps=True``), as Stable Diffusion's PNDM sampling does."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown sampler '{name}'; valid: {', '.join(SCHEDULERS)}")
    base = {k: v for k, v in dict(getattr(config, "config", config)).items() if not k.startswith("_")}
    if name == "pndm":
        base["skip_prk_steps"] = True  # PLMS only, as Stable Diffusion samples with PNDM
    cls = getattr(diffusers, SCHEDULERS[name])
    return cls.from_config(base)


def _check_inputs(cond: Any, uncond: Any, guidance_scale: float, steps: int) -> None:
    if cond.ndim != 3:
        raise ValueError(f"text embeddings must be (N, L, D), got shape {tuple(cond.shape)}")
    if guidance_scale != 1.0 and uncond is None:
        raise ValueError("guidance_scale != 1 needs unconditional embeddings (encode the empty prompt)")
    if uncond is not None and uncond.shape[1:] != cond.shape[1:]:
        raise ValueError(f"unconditional embeddings {tuple(uncond.shape)} do not match conditional {tuple(cond.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def _predict(unet: Any, latents: Any, t: Any, cond: Any, uncond: Any, guidance_scale: float, scheduler: Any,
             store: Any = None, unet_kwargs: dict[str, Any] | None = None,
             unet_kwargs_fn: UnetKwargsFn | None = None) -> Any:
    """Noise prediction with classifier-free guidance (batch [uncond, cond] in one UNet call)."""
    import torch

    n = latents.shape[0]
    use_cfg = uncond is not None and guidance_scale != 1.0
    x = torch.cat([latents, latents]) if use_cfg else latents
    x = scheduler.scale_model_input(x, t)
    context = torch.cat([uncond.expand(n, -1, -1), cond]) if use_cfg else cond
    if store is not None:
        store.begin_step(t)
        store.batch_slice = slice(n, 2 * n) if use_cfg else None
    kwargs = dict(unet_kwargs or {})
    if unet_kwargs_fn is not None:
        kwargs.update(unet_kwargs_fn(x, t, context))
    out = unet(x.to(unet.dtype), t, encoder_hidden_states=context.to(unet.dtype), **kwargs).sample.float()
    if not use_cfg:
        return out
    eps_uncond, eps_cond = out.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def sample(unet: Any, cond: Any, scheduler: Any, codec: Any, steps: int = 50, guidance_scale: float = 7.5,
           generator: Any = None, callback: Callback | None = None, uncond: Any = None, latents: Any = None,
           shape: tuple[int, ...] | None = None, store: Any = None, unet_kwargs: dict[str, Any] | None = None,
           decode: bool = True, unet_kwargs_fn: UnetKwargsFn | None = None) -> Any:
    """Generate images from text embeddings.

    Steps: (1) check inputs, (2) set the scheduler's timesteps, (3) draw the initial noise (or take ``latents``),
    (4) per step: predict noise with classifier-free guidance, run ``callback``, step the scheduler,
    (5) decode with the codec.

    Args:
        unet: `UNet2DConditionModel`.
        cond: conditional text embeddings (N, L, D).
        scheduler: a diffusers scheduler (see `make_scheduler`); its state is reset by ``set_timesteps``.
        codec: `Codec` of the model space.
        steps: number of denoising steps.
        guidance_scale: classifier-free guidance weight w (eps_u + w (eps_c - eps_u)); 1 disables guidance.
        generator: torch generator for the noise (and stochastic schedulers).
        callback: see `Callback`; it may enable gradients itself (``torch.enable_grad()``).
        uncond: unconditional embeddings (1 or N, L, D), required when ``guidance_scale != 1``.
        latents: initial latents x_T (e.g. from `ddim_invert`), else Gaussian noise of ``shape``.
        shape: latent shape (N, C, h, w); default from the UNet's config.
        store: an `AttentionStore` to tell the timestep and the conditional half of the batch.
        unet_kwargs: extra UNet arguments (``cross_attention_kwargs``, ``added_cond_kwargs``, ...).
        decode: return images in [0, 1] (True) or the final latents.
        unet_kwargs_fn: see `UnetKwargsFn`; per-step UNet arguments computed from the step's inputs (ControlNet).

    Returns:
        images (N, C, H, W) in [0, 1], or latents.
    """
    import torch

    _check_inputs(cond, uncond, guidance_scale, steps)
    n = cond.shape[0]
    scheduler.set_timesteps(steps, device=cond.device)
    if latents is None:
        size = int(unet.config.sample_size)
        shape = shape or (n, int(unet.config.out_channels), size, size)
        latents = torch.randn(shape, generator=generator, device=cond.device) * scheduler.init_noise_sigma
    latents = latents.float()
    step_kwargs = {"generator": generator} if "generator" in _step_params(scheduler) else {}
    for i, t in enumerate(scheduler.timesteps):
        with torch.no_grad():
            eps = _predict(unet, latents, t, cond, uncond, guidance_scale, scheduler, store, unet_kwargs,
                           unet_kwargs_fn)
        if callback is not None:
            moved = callback(i, t, latents)
            if moved is not None:
                latents = moved.detach()
        latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
    if store is not None:
        store.batch_slice = None
    if not decode:
        return latents
    with torch.no_grad():
        return codec.decode(latents)


def _step_params(scheduler: Any) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)


def ddim_invert(unet: Any, cond: Any, scheduler: Any, latents: Any, steps: int = 50,
                return_trajectory: bool = False, unet_kwargs: dict[str, Any] | None = None) -> Any:
    """DDIM inversion: run the deterministic DDIM update backwards from clean latents x_0 to x_T.

    Uses diffusers' `DDIMInverseScheduler` built from the model's noise schedule, without sample clipping.
    Sampling from the result with `sample` (DDIM scheduler, same ``steps``, ``guidance_scale=1``, same ``cond``)
    reconstructs the input up to the inversion error.

    Args:
        unet: `UNet2DConditionModel`.
        cond: text embeddings (N, L, D) used for the inversion (no classifier-free guidance).
        scheduler: any scheduler of the model (only its noise-schedule config is used).
        latents: clean latents (N, C, h, w) (``codec.encode(images)``).
        steps: inversion steps.
        return_trajectory: also return the list of intermediate latents (x_0 first).

    Returns:
        x_T (N, C, h, w), and the trajectory if asked.
    """
    import torch
    from diffusers import DDIMInverseScheduler

    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    config.update(clip_sample=False)
    inverse = DDIMInverseScheduler.from_config(config)
    inverse.set_timesteps(steps, device=latents.device)
    x = latents.float()
    trajectory = [x]
    with torch.no_grad():
        for t in inverse.timesteps:
            eps = unet(x.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype), **(unet_kwargs or {})).sample
            x = inverse.step(eps.float(), t, x).prev_sample
            trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def ddim_scheduler_for_inversion(scheduler: Any) -> Any:
    """The DDIM sampler matching `ddim_invert` (same schedule, no clipping) for the reconstruction pass."""
    from diffusers import DDIMScheduler

    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    config.update(clip_sample=False)
    return DDIMScheduler.from_config(config)


def latent_guidance_step(latents: Any, loss_fn: Callable[[Any], Any], step_size: float,
                         normalize: bool | str = False) -> tuple[Any, float]:
    """One gradient step on the latents: x <- x - step_size * dL/dx (attention guidance).

    This is the update of layout guidance (DiDGen, thesis chapter 5, Attn-Refocus, ZestGuide): ``loss_fn``
    runs the UNet with an `AttentionStore` in ``keep_grad`` mode and turns the captured maps into a loss.

    Args:
        latents: current latents x_t (N, C, h, w).
        loss_fn: ``loss_fn(latents_with_grad) -> scalar tensor``.
        step_size: step length (the papers' eta, possibly times a timestep-dependent factor).
        normalize: ``True`` or ``"rms"``: divide the gradient by its RMS over the whole tensor (scale-free steps);
            ``"max"``: divide each element's gradient by its own largest absolute entry (ZestGuide's L-infinity
            normalisation, per batch element so that elements stay independent); False: none.

    Returns:
        (new latents, detached), loss value before the step.
    """
    import torch

    if normalize not in (False, True, "rms", "max"):
        raise ValueError(f"normalize must be False, True, 'rms' or 'max', got {normalize!r}")
    with torch.enable_grad():
        x = latents.detach().float().requires_grad_(True)
        loss = loss_fn(x)
        (grad,) = torch.autograd.grad(loss, x)
    if normalize == "max":
        grad = grad / grad.flatten(1).abs().amax(1).clamp_min(1e-12).reshape(-1, *[1] * (grad.ndim - 1))
    elif normalize:
        grad = grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)
    return (x - step_size * grad).detach(), float(loss.detach())


def seeded_noise(shape: tuple[int, ...], seeds: Any, scale: float = 1.0) -> Any:
    """Initial latents (N, *shape), element ``k`` drawn from its own generator seeded by ``seeds[k]``, times ``scale``
    (the scheduler's ``init_noise_sigma``): an element is the same whatever batch it is generated in."""
    import torch

    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]) * scale


#: A guidance loss for `guided_sample`: ``loss_fn(store, rows, i)`` (``i`` the sampling iteration) is called right after the UNet ran on the
#: conditional embeddings of batch elements ``rows`` (a LongTensor of indices into the batch) with gradients on, so
#: ``store`` holds that call's attention maps. It returns a scalar (the sum over ``rows``, so that each element takes
#: the step it would take alone) or per-element losses (len(rows),), optionally with a bool tensor (len(rows),) that
#: is True for elements that need no further inner step at this iteration.
GuidanceLoss = Callable[[Any, Any], Any]


def guided_sample(unet: Any, scheduler: Any, cond: Any, uncond: Any, latents: Any, guidance_scale: float,
                  store: Any, loss_fn: GuidanceLoss | None, step_sizes: Any, guided: Any = None,
                  inner_steps: Any = 1, normalize: bool | str = False,
                  after_predict: Callable[[int, Any], None] | None = None,
                  before_unet: Callable[[Any, list[int | None]], None] | None = None) -> Any:
    """Classifier-free-guidance sampling with attention-guided gradient steps on the latent (layout guidance).

    Per sampling iteration ``i`` (over ``scheduler.timesteps``, already set):
    (1) if ``step_sizes[i] > 0``: up to ``inner_steps[i]`` gradient steps ``z <- z - step_sizes[i] * dL/dz`` on the
    guided elements, each with one UNet call on their conditional embeddings only (``store`` records its maps with
    gradients) and ``loss_fn``; an element whose ``loss_fn`` reports it done takes no further inner step;
    (2) the ordinary CFG noise prediction from the moved latent, one UNet call on ``[uncond, cond]`` (``store``
    records the conditional half); (3) ``after_predict(i, t)``; (4) the scheduler step.
    This is the loop of DiDGen (thesis section 4.3.4), ZestGuide and Attn-Refocus; only the loss, the step sizes
    and the inner steps differ.

    Args:
        unet: `UNet2DConditionModel` with storing processors installed for ``store``.
        scheduler: a diffusers scheduler after ``set_timesteps``.
        cond: conditional embeddings (N, L, D); uncond: unconditional (1, L, D).
        latents: initial latents (N, C, h, w) (`seeded_noise`).
        store: an `AttentionStore` (``mode="last"``, ``keep_grad=True``).
        loss_fn: see `GuidanceLoss`; None disables guidance.
        step_sizes: one step size per iteration (0: no guidance at that iteration).
        guided: indices of the elements that are guided (default all).
        inner_steps: int or one int per iteration: gradient steps per iteration.
        normalize: gradient normalisation of `latent_guidance_step`.
        after_predict: called after the CFG prediction of each iteration (e.g. to keep the maps for a read-out).
        before_unet: ``before_unet(t, rows)`` before every UNet call, ``rows[j]`` the batch element of row ``j`` of
            the call (None for unconditional rows); for processors that change attention per element.

    Returns:
        the final latents (N, C, h, w).
    """
    import torch

    n = latents.shape[0]
    guided = list(range(n)) if guided is None else list(guided)
    n_iter = len(scheduler.timesteps)
    inner = [int(inner_steps)] * n_iter if isinstance(inner_steps, int) else [int(k) for k in inner_steps]
    for i, t in enumerate(scheduler.timesteps):
        if loss_fn is not None and guided and step_sizes[i] > 0:
            active = list(guided)
            for _ in range(inner[i]):
                if not active:
                    break
                sub = torch.tensor(active)
                done: list[Any] = []

                def step_loss(z: Any, sub: Any = sub, t: Any = t, i: int = i, done: list[Any] = done) -> Any:
                    if before_unet is not None:
                        before_unet(t, [int(b) for b in sub])
                    store.begin_step(t)
                    unet(scheduler.scale_model_input(z, t), t, encoder_hidden_states=cond[sub])
                    out = loss_fn(store, sub, i)
                    if isinstance(out, tuple):
                        out, finished = out
                        done.append(finished)
                    return out if out.ndim == 0 else out.sum()

                moved, _ = latent_guidance_step(latents[sub], step_loss, step_sizes[i], normalize=normalize)
                latents = latents.clone()
                latents[sub] = moved
                if done:
                    active = [b for b, stop in zip(active, done[0].tolist()) if not stop]
        if before_unet is not None:
            before_unet(t, [None] * n + list(range(n)))
        eps = cfg_eps_recording(unet, latents, t, cond, uncond, guidance_scale, scheduler, store)
        if after_predict is not None:
            after_predict(i, t)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents


def cfg_eps_recording(unet: Any, latents: Any, t: Any, cond: Any, uncond: Any, scale: float, scheduler: Any,
                      store: Any) -> Any:
    """CFG noise prediction in one UNet call on ``[uncond, cond]``, recording the conditional half in ``store``."""
    import torch

    n = latents.shape[0]
    with torch.no_grad():
        x = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        store.begin_step(t)
        store.batch_slice = slice(n, 2 * n)
        out = unet(x, t, encoder_hidden_states=torch.cat([uncond.expand(n, -1, -1), cond])).sample.float()
        store.batch_slice = None
    eps_u, eps_c = out.chunk(2)
    return eps_u + scale * (eps_c - eps_u)

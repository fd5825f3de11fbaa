"""Attention Refocusing (Phung, Ge, Huang, CVPR 2024) on DiDGen's region-aware fine-tuned UNet, with the lesion mask
as layout: the baseline of thesis Tables 4.5 and 4.6. See README.md for every decision and its provenance."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from bench.diffusion.derm_t2i import DermT2I, DermT2IConfig, generate_with_condition_masks
from bench.interface import Capabilities, Condition, RunContext, Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttnRefocusConfig(DermT2IConfig):
    """DiDGen's options (the fit is DiDGen's) plus Attention Refocusing's; defaults are the paper/official code's
    (schedule given for 50 steps in the code, expressed here as fractions of the sampling iterations)."""

    refocus_ca_res: int = 16
    """Side of the cross-attention maps of L_CAR (code: 16; mini-sd: 8)."""
    refocus_sa_res: int = 16
    """Side of the self-attention maps of L_SAR (code: 16, the 256-token layers; mini-sd: 8)."""
    refocus_schedule: tuple[tuple[float, float, int], ...] = (
        (0.04, 4.0, 2), (0.1, 4.0, 6), (0.2, 3.0, 3), (0.4, 3.0, 2), (1.0, 1.0, 2))
    """(until fraction of iterations, loss scale, max gradient steps): code, iterations <2, <5, <10, <20, rest of 50."""
    refocus_until: float = 0.2
    """Guidance at every iteration before this fraction (code: the first 10 of 50)."""
    refocus_late_every: float = 0.1
    """After that, guidance every this fraction of the iterations (code: every 5th of 50; 0 disables) ..."""
    refocus_late_until: float = 0.7
    """... up to this fraction (code: iteration 35 of 50)."""
    refocus_eta: float = 1.0
    """Step size: z <- z - eta * grad(scale * (L_CAR + L_SAR)) (code: 1, the raw gradient)."""
    loss_threshold: float = 0.1
    """An image takes no further gradient step at an iteration once its scaled loss is below this (code: 0.1)."""
    min_inside_stop: float = 0.2
    """... or once every token's largest attention inside its region reaches this (code: 0.2)."""
    car_weight: float = 1.0
    """Weight of L_CAR (code: 1)."""
    sar_weight: float = 1.0
    """Weight of L_SAR (code: 1)."""
    refocus_smoothing: bool = True
    """Gaussian-smooth the token maps (kernel 3, sigma 0.5), as the code (``smooth_att=True``)."""
    refocus_tokens: Literal["all", "prompt"] = "all"
    """Softmax (x100) over tokens 1..75 (code: ``attn[..., 1:-1]``, padding included) or the prompt tokens only."""
    skin_region: bool = True
    """Regions ``<lesion>`` = mask and ``<skin>`` = its complement; False: the lesion region only."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if not self.refocus_schedule or any(len(row) != 3 for row in self.refocus_schedule):
            raise ConfigError("method.refocus_schedule must be a list of (until_fraction, loss_scale, max_steps)")


class AttnRefocus(DermT2I):
    """Training-free Cross- and Self-Attention Refocusing of DiDGen's fine-tuned UNet towards a given lesion mask.

    ``fit`` is DiDGen's region-aware fine-tuning (its cached fit is reused: ``fit_from = "didgen"``); ``generate``
    returns, per condition, the guided image and the conditioning mask (Attn-Refocus reads no mask out).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask"}))
    Config = AttnRefocusConfig
    version: ClassVar[str] = "1"
    fit_from: ClassVar[str | None] = "didgen"
    generation_only: ClassVar[frozenset[str]] = DermT2I.generation_only | frozenset({
        "refocus_ca_res", "refocus_sa_res", "refocus_schedule", "refocus_until", "refocus_late_every",
        "refocus_late_until", "refocus_eta", "loss_threshold", "min_inside_stop", "car_weight", "sar_weight",
        "refocus_smoothing", "refocus_tokens", "skin_region"})

    def schedule(self, n_iter: int) -> tuple[list[float], list[int]]:
        """Loss scale (0 = no guidance) and max gradient steps per sampling iteration."""
        c = self.config
        every = max(1, round(c.refocus_late_every * n_iter)) if c.refocus_late_every > 0 else 0
        steps, inner = [], []
        for i in range(n_iter):
            on = i < int(c.refocus_until * n_iter) or (every > 0 and i % every == 0 and i <= c.refocus_late_until * n_iter)
            scale, max_steps = next(((s, k) for until, s, k in c.refocus_schedule if i < int(until * n_iter)),
                                    c.refocus_schedule[-1][1:])
            steps.append(float(scale) if on else 0.0)
            inner.append(int(max_steps) if on else 0)
        return steps, inner

    def loss(self, store: Any, rows: torch.Tensor, masks: dict[int, torch.Tensor], positions: torch.Tensor,
             eots: list[int], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-element scaled loss ``scale * (w_CAR L_CAR + w_SAR L_SAR)`` and the per-element stop flags."""
        from bench.diffusion.layout import resize_mask_to, token_softmax

        from .loss import car_loss, sar_loss

        c = self.config
        ca = store.maps(c.refocus_ca_res, "cross")
        sa = store.maps(c.refocus_sa_res, "self")
        n = c.refocus_sa_res ** 2
        losses, done = [], []
        for k, b in enumerate(rows.tolist()):
            eot = ca.shape[-1] - 1 if c.refocus_tokens == "all" else eots[b]
            tok = token_softmax(ca[k], eot, scale=100.0, smooth=c.refocus_smoothing)
            which = [int(positions[b, 0])] + ([int(positions[b, 1])] if c.skin_region else [])
            maps = torch.stack([tok[..., p - 1] for p in which])
            m_ca = resize_mask_to(masks[b], c.refocus_ca_res) > 0.5
            m_sa = resize_mask_to(masks[b], c.refocus_sa_res) > 0.5
            regions_ca = torch.stack([m_ca, ~m_ca])[:len(which)]
            regions_sa = torch.stack([m_sa, ~m_sa])[:len(which)]
            l_car, min_inside = car_loss(maps, regions_ca)
            loss = scale * (c.car_weight * l_car + c.sar_weight * sar_loss(sa[k].reshape(n, n), regions_sa))
            losses.append(loss)
            done.append(bool(loss.detach() <= c.loss_threshold) or bool(min_inside >= c.min_inside_stop))
        return torch.stack(losses), torch.tensor(done)

    def generate_images(self, prompts: list[str], masks: list[torch.Tensor], seeds: list[int]) -> torch.Tensor:
        """Guided images (N, 3, H, W) in [0, 1] for condition masks ``masks``."""
        from bench.diffusion.attention import AttentionStore, storing_processors
        from bench.diffusion.sampling import guided_sample, make_scheduler, seeded_noise
        from bench.diffusion.dermprompt import encode_prompts

        c, parts = self.config, self.parts
        store = AttentionStore(cross=True, self_attention=True, resolutions={c.refocus_ca_res, c.refocus_sa_res},
                               mode="last", keep_grad=True)
        parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
        sched = make_scheduler(c.sampler, parts.scheduler)
        sched.set_timesteps(c.sample_steps)
        scales, inner = self.schedule(len(sched.timesteps))
        enc = encode_prompts(parts, prompts, self.placeholder_ids)
        latents = seeded_noise(parts.sample_shape(1)[1:], seeds, sched.init_noise_sigma)
        by_index = {b: m.float() for b, m in enumerate(masks)}

        def loss_fn(st: Any, rows: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self.loss(st, rows, by_index, enc.positions, enc.eots, scales[i])

        latents = guided_sample(parts.unet, sched, enc.cond, enc.uncond, latents, c.guidance_scale, store, loss_fn,
                                [c.refocus_eta if s > 0 else 0.0 for s in scales], inner_steps=inner)
        store.reset()
        with torch.no_grad():
            return parts.codec.decode(latents).clamp(0, 1)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        yield from generate_with_condition_masks(self, conditions, ctx)

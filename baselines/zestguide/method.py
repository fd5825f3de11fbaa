"""ZestGuide (Couairon et al., ICCV 2023) on DiDGen's region-aware fine-tuned UNet: the baseline of thesis
Tables 4.5 and 4.6 (chapter 4, Experiment 3). See README.md for every decision and its provenance."""
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
class ZestGuideConfig(DermT2IConfig):
    """DiDGen's options (the fit is DiDGen's) plus ZestGuide's guidance; defaults are the paper/official code's."""

    zest_res: tuple[int, ...] = (16, 32)
    """Cross-attention sides whose maps form the estimated segmentation (code, SD 1.4: the 16x16 and 32x32 layers,
    resized to 32; mini-sd: 8 and 16)."""
    zest_tau: float = 0.5
    """Guidance runs while ``i <= int(n_iter * (1 - tau))`` (code ``tau`` 0.5: the first half)."""
    zest_lr: float = 0.3
    """Step size eta of ``z <- z - eta_t grad / ||grad||_inf`` (code, SD 1.4 config: 0.3)."""
    zest_lr_schedule: bool = True
    """eta_t = eta * sqrt(1 - alpha_bar_t) (code ``lr_schedule: True``); False: constant eta."""
    zest_grad_norm: Literal["max", "none"] = "max"
    """Gradient normalisation: by its largest absolute entry, per image (paper and code, ``grad_norm: l0``)."""
    zest_map_scale: float = 10.0
    """Multiplier of the attention maps in the first BCE (code ``loss_scaler`` 10)."""
    zest_gate: float = 0.01
    """Pixels where both map and mask are below this carry no gradient (code)."""
    zest_ls: float = 0.1
    """The same gate on the max-normalised maps (code ``loss_ls`` 0.1)."""
    skin_segment: bool = True
    """Two segments, ``<lesion>`` on the mask and ``<skin>`` on its complement (ZestGuide conditions on a full
    segmentation map); False: the lesion segment only."""


class ZestGuide(DermT2I):
    """Training-free zero-shot segmentation guidance of DiDGen's fine-tuned UNet towards a given lesion mask.

    ``fit`` is DiDGen's region-aware fine-tuning (and its cached fit is reused: ``fit_from = "didgen"``);
    ``generate`` returns, per condition, the guided image and the conditioning mask (ZestGuide reads no mask out).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask"}))
    Config = ZestGuideConfig
    version: ClassVar[str] = "1"
    fit_from: ClassVar[str | None] = "didgen"
    generation_only: ClassVar[frozenset[str]] = DermT2I.generation_only | frozenset({
        "zest_res", "zest_tau", "zest_lr", "zest_lr_schedule", "zest_grad_norm", "zest_map_scale", "zest_gate",
        "zest_ls", "skin_segment"})

    def step_sizes(self, sched: Any) -> list[float]:
        """eta_t per sampling iteration (0 after the guided part)."""
        c = self.config
        n_iter = len(sched.timesteps)
        last = int(n_iter * (1 - c.zest_tau))
        out = []
        for i, t in enumerate(sched.timesteps):
            eta = c.zest_lr
            if c.zest_lr_schedule:
                eta *= float((1 - sched.alphas_cumprod[int(t)]).sqrt())
            out.append(eta if i <= last else 0.0)
        return out

    def loss(self, store: Any, rows: torch.Tensor, masks: dict[int, torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
        """Per-element ZestGuide loss (len(rows),) from the maps of the last UNet call."""
        from bench.diffusion.layout import resize_mask_to

        from .loss import segment_maps, zest_loss

        c = self.config
        side = max(c.zest_res)
        out = []
        for k, b in enumerate(rows.tolist()):
            groups = [[int(positions[b, 0])]] + ([[int(positions[b, 1])]] if c.skin_segment else [])
            maps = segment_maps(_Rows(store, k), tuple(c.zest_res), groups, side)[0]
            m = resize_mask_to(masks[b], side, mode="area")
            target = torch.stack([m, 1 - m]) if c.skin_segment else m[None]
            out.append(zest_loss(maps, target, scale=c.zest_map_scale, gate=c.zest_gate, ls=c.zest_ls))
        return torch.stack(out)

    def generate_images(self, prompts: list[str], masks: list[torch.Tensor], seeds: list[int]) -> torch.Tensor:
        """Guided images (N, 3, H, W) in [0, 1] for condition masks ``masks``."""
        from bench.diffusion.attention import AttentionStore, storing_processors
        from bench.diffusion.sampling import guided_sample, make_scheduler, seeded_noise
        from bench.diffusion.dermprompt import encode_prompts

        c, parts = self.config, self.parts
        store = AttentionStore(cross=True, self_attention=False, resolutions=set(c.zest_res), mode="last",
                               keep_grad=True)
        parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
        sched = make_scheduler(c.sampler, parts.scheduler)
        sched.set_timesteps(c.sample_steps)
        enc = encode_prompts(parts, prompts, self.placeholder_ids)
        latents = seeded_noise(parts.sample_shape(1)[1:], seeds, sched.init_noise_sigma)
        by_index = {b: m.float() for b, m in enumerate(masks)}
        latents = guided_sample(parts.unet, sched, enc.cond, enc.uncond, latents, c.guidance_scale, store,
                                lambda st, rows, i: self.loss(st, rows, by_index, enc.positions), self.step_sizes(sched),
                                normalize="max" if c.zest_grad_norm == "max" else False)
        store.reset()
        with torch.no_grad():
            return parts.codec.decode(latents).clamp(0, 1)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        yield from generate_with_condition_masks(self, conditions, ctx)


class _Rows:
    """A view of an `AttentionStore` restricted to one batch row (keeps `segment_maps` per image)."""

    def __init__(self, store: Any, row: int) -> None:
        self.store, self.row = store, row

    def maps(self, res: int, kind: str = "cross") -> torch.Tensor:
        return self.store.maps(res, kind)[self.row:self.row + 1]

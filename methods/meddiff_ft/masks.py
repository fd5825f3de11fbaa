"""MedDiff-FT's mask generator G_mask (spec A.4): a small unconditional DDPM on lesion masks.

The paper: "a DDPM based on UNet architecture, trained on mask images ... four hierarchical layers with
progressively increasing channel dimensions [64, 128, 256, 512]"; everything else is unspecified (the code is not
released). Choices (spec A.14, options of `MedDiffFTConfig`): diffusers ``UNet2DModel`` with those widths (mini:
narrower), one ResNet layer per block, no attention; cosine-beta ``DDPMScheduler`` (1000 steps, epsilon); trained on
every non-empty training mask at ``mask_resolution`` in {-1, 1}, with random flips and 90-degree rotations; AdamW;
sampled with DDIM, thresholded at 0, the largest connected component kept and holes filled, masks whose area is
outside [``min_area``, ``max_area``] of the image redrawn (a real training mask after ``max_tries`` failures, counted).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def build_mask_unet(resolution: int, channels: Sequence[int], seed: int) -> Any:
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=resolution, in_channels=1, out_channels=1, block_out_channels=tuple(channels),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * len(channels),
                           up_block_types=("UpBlock2D",) * len(channels), norm_num_groups=min(8, channels[0]))


def mask_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=True)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(-2, -1))
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(-1)
    return x


def train_mask_ddpm(unet: Any, masks: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int,
                    advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Train ``unet`` on masks (N, r, r) bool (epsilon MSE, AdamW, clip 1)."""
    sched = mask_scheduler()
    data = masks.float()[:, None] * 2 - 1
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    unet.train().requires_grad_(True)
    log = []
    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        x0 = torch.stack([_augment(data[i], gen) for i in idx.tolist()])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=gen)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        log.append({"step": step, "loss": float(loss.detach())})
        if advance is not None:
            advance()
    unet.eval().requires_grad_(False)
    return log


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component with holes filled (empty stays empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))


@torch.no_grad()
def sample_masks(unet: Any, seeds: Sequence[int], steps: int, min_area: float, max_area: float, max_tries: int,
                 fallback: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One cleaned mask (r, r) bool per seed; returns the masks and how many fell back to a real mask."""
    from diffusers import DDIMScheduler

    r = int(unet.config.sample_size)
    out: list[torch.Tensor | None] = [None] * len(seeds)
    pending = list(range(len(seeds)))
    for attempt in range(max_tries):
        if not pending:
            break
        sched = DDIMScheduler.from_config(mask_scheduler().config)
        sched.set_timesteps(steps)
        x = torch.stack([torch.randn(1, r, r, generator=torch.Generator().manual_seed(int(seeds[i]) + 7919 * attempt))
                         for i in pending])
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
        still = []
        for k, i in enumerate(pending):
            m = clean_mask(x[k, 0].numpy() > 0)
            if min_area <= m.mean() <= max_area:
                out[i] = torch.from_numpy(m)
            else:
                still.append(i)
        pending = still
    for i in pending:
        out[i] = fallback[int(seeds[i]) % len(fallback)].bool()
    return torch.stack(out), len(pending)  # type: ignore[arg-type]

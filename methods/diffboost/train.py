"""DiffBoost's ControlNet training (spec B.3-B.5): pretraining on a mix of modalities and per-task fine-tuning.

The loop is `baselines.controlnet.train.train_controlnet`'s (frozen UNet / text encoder / codec, "sd_locked": only
the ControlNet's parameters in AdamW, epsilon MSE, uniform timesteps, gradient clip) with what DiffBoost adds: one
prompt per pair ("<Organ>, <Modality>"), and the code's joint augmentation of image and edge map
(``finetune_segmentation_training.py``): rotation U(-20, 20) degrees and a crop factor f ~ U(0.75, 1.05)
(f < 1: zoom in by 1 / f; f >= 1: zoom out by 2 - f, zero padding), one draw per pair per step.

Pretraining (B.4): the paper pretrains on RadImageNet (1.35 M CT / MRI / US images, 7 GPU-days); the mini profile
pretrains on a mix of the package's procedural worlds (`MINI_WORLDS`: chest X-ray, dermoscopy of another world
seed, generic shapes), each with a dataset-level prompt, and caches the result per (recipe, seed) in the run's
cache dir, so every DiffBoost run of a seed shares one pretraining.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.data.pretrain_mix import WORLDS

logger = logging.getLogger(__name__)

#: mini pretraining worlds: id -> (dataset id, options, prompt), the worlds of `bench.data.pretrain_mix` (the
#: pretrain-mix-mini dataset, whose test split the radimagenet-synthesis task scores). derm-mini's world seed differs
#: from the task's.
MINI_WORLDS: dict[str, tuple[str, dict[str, Any], str]] = WORLDS


def joint_augment(images: torch.Tensor, hints: torch.Tensor, generator: torch.Generator,
                  rotation: float = 20.0, crop: tuple[float, float] = (0.75, 1.05)) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and zoom each (image, hint) pair alike (the code's ``segmentation_dataset.py`` transform)."""
    n = len(images)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotation)
    f = crop[0] + torch.rand(n, generator=generator) * (crop[1] - crop[0])
    zoom = torch.where(f < 1, 1 / f, 2 - f)  # >1 magnifies, <1 shrinks
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    both = torch.cat([images, hints], 1)
    grid = F.affine_grid(theta.to(both), list(both.shape), align_corners=False)
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :images.shape[1]], out[:, images.shape[1]:]


def train_edge_controlnet(parts: Any, controlnet: Any, images: torch.Tensor, hints: torch.Tensor,
                          prompts: Sequence[str], steps: int, batch_size: int, lr: float, seed: int,
                          augment: bool = True, weight_decay: float = 0.0, grad_clip: float = 1.0,
                          advance: Callable[..., None] | None = None) -> list[dict[str, float]]:
    """Train ``controlnet`` in place on (image, edge hint, prompt) triples; ``parts`` stays frozen.

    Args:
        images: (N, 3, R, R) in [0, 1]; hints: (N, 3, R, R) edge maps in [0, 1]; prompts: one per pair.
        weight_decay: AdamW weight decay (ControlNet's ``configure_optimizers``: AdamW defaults; the code passes none).
    """
    unet, codec, sched = parts.unet, parts.codec, parts.scheduler
    unet.eval().requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    controlnet.train().requires_grad_(True)
    params = [p for p in controlnet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    unique = sorted(set(prompts))
    with torch.no_grad():
        states = parts.encode_prompt(unique).float()
    which = torch.tensor([unique.index(p) for p in prompts])
    gen = torch.Generator().manual_seed(seed)
    n_train = int(sched.config.num_train_timesteps)
    device = parts.device
    log: list[dict[str, float]] = []
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        x, h = images[idx], hints[idx]
        if augment:
            x, h = joint_augment(x, h, gen)
        with torch.no_grad():
            x0 = codec.encode(x.to(device)).float()
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.randint(0, n_train, (len(idx),), generator=gen).to(device)
        noisy = sched.add_noise(x0, noise, t)
        context = states[which[idx]].to(device)
        down, mid = controlnet(noisy, t, encoder_hidden_states=context, controlnet_cond=h.to(device), return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        loss = F.mse_loss(pred.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        log.append({"step": step, "loss": float(loss.detach())})
        if advance is not None:
            advance()
    controlnet.eval().requires_grad_(False)
    return log


def mini_world_pairs(worlds: Sequence[str], per_world: int, resolution: int) -> tuple[list[Any], list[str]]:
    """Training samples of the mini pretraining worlds (``per_world`` each, train split) and their prompts: the
    train split of the pretrain-mix-mini dataset with ``sizes.train = per_world`` at ``resolution``."""
    from bench.data.base import DataError
    from bench.data.pretrain_mix import PretrainMixMini

    unknown = [w for w in worlds if w not in MINI_WORLDS]
    if unknown:
        raise DataError(f"method.pretrain_worlds: unknown mini world '{unknown[0]}'; valid: {', '.join(MINI_WORLDS)}")
    split = PretrainMixMini(image_size=resolution, worlds=tuple(worlds), sizes={"train": per_world}).load("train")
    samples = [split[i] for i in range(len(split))]
    return samples, [s.prompt for s in samples]


def cached_folder(cache_root: Path, key: str) -> Path:
    return Path(cache_root) / "diffboost-pretrain" / key


def store_atomically(controlnet: Any, folder: Path) -> None:
    """Write a `save_pretrained` folder through a per-process temporary and rename it into place."""
    from bench.diffusion.controlnet import save_controlnet

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_controlnet(controlnet, tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another run stored it first
        shutil.rmtree(tmp, ignore_errors=True)

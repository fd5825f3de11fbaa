"""Exponential moving average of generator weights (PGAN section A.1; StyleGAN's G_ema)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """target <- decay * target + (1 - decay) * source for parameters; buffers are copied."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s.detach(), 1.0 - decay)
    for t, s in zip(target.buffers(), source.buffers()):
        t.copy_(s)


def ema_decay_at(step: int, decay: float) -> float:
    """Decay ramped up over the first steps, min(decay, (1 + step) / (10 + step)), so a short run's average
    is not dominated by the random initialisation."""
    return min(decay, (1 + step) / (10 + step))

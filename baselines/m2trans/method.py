"""m2trans: the Meshed-Memory Transformer report generator of M2Trans (Miura et al. 2021; thesis Tables 6.3 / 6.4),
written here (`model.M2Model`), trained with cross-entropy on the task's training images and report sections.

The thesis ran the public checkpoints of ``ysmiura/ifcc`` (CheXpert-pretrained DenseNet-121 image encoder,
NLI / entity-match reinforcement rewards); here the image encoder is the small CNN of the mini profile, trained
jointly, and the factual-completeness RL stage is not implemented. ``checkpoint`` loads a folder saved by this class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from baselines.r2gen.method import R2Gen, R2GenConfig


@dataclass(frozen=True)
class M2TransConfig(R2GenConfig):
    """R2Gen's data and training options plus the M2 Transformer's sizes (paper: M2 defaults)."""

    ffn: int = 2048
    memory_slots: int = 40
    """Learned memory slots per encoder attention (M2: 40)."""


class M2Trans(R2Gen):
    """Reports for given images with a meshed-memory Transformer."""

    Config = M2TransConfig
    version: ClassVar[str] = "1"

    def build_model(self, vocab_size: int) -> torch.nn.Module:
        from .model import M2Model

        c: Any = self.config
        return M2Model(vocab_size, c.d_model, c.layers, c.heads, c.ffn, c.memory_slots, c.max_length, c.dropout)

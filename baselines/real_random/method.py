"""real-random: the thesis' "Training Sample (Random)" arm (chapter 5, Table 5.3).

A data-only control for generic fine-tuning: as many real training pairs as the task asks for, drawn
uniformly without replacement from the whole training split (low-contrast images included), whatever
the conditions say. `fit` keeps the training pairs (saved as uint8 safetensors, so a cached fit stage
restores them); condition ``i`` (``meta["index"]``) receives pool item ``perm[i]``, where ``perm`` is a
permutation seeded by (run seed, ``pool_seed``), so the draw does not depend on generation shards. Asked
for more pairs than the pool holds, it cycles through the permutation.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealRandomConfig:
    pool_seed: int = 0
    """Salt of the random draw (combined with the run seed)."""


class RealRandom(GeneratorBase):
    """Returns random real training pairs, one per condition (conditions give only the count and index)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "reference"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        fit_needs=frozenset({"mask"}))
    Config = RealRandomConfig
    version: ClassVar[str] = "1"

    def __init__(self, config: RealRandomConfig | None = None) -> None:
        super().__init__(config)
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.ids: list[str] = []

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        self.images, self.masks, self.ids = [], [], []
        for i in range(len(train)):
            s = train[i]
            if s.image is None or s.mask is None:
                raise FitSetError(f"real-random needs image-mask training pairs; training sample "
                                  f"{s.meta.get('id', i)} has no mask")
            self.images.append((s.image.float().clamp(0, 1) * 255).round().to(torch.uint8))
            self.masks.append(s.mask.bool())
            self.ids.append(str(s.meta.get("id", i)))
        logger.info("real-random: pool of %d real training pairs", len(self.ids))

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"image.{i}": t.contiguous() for i, t in enumerate(self.images)}
        tensors.update({f"mask.{i}": m.to(torch.uint8).contiguous() for i, m in enumerate(self.masks)})
        save_file(tensors, str(Path(path) / "pool.safetensors"))
        (Path(path) / "pool.json").write_text(json.dumps({"ids": self.ids}))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(Path(path) / "pool.safetensors"))
        self.ids = json.loads((Path(path) / "pool.json").read_text())["ids"]
        self.images = [tensors[f"image.{i}"] for i in range(len(self.ids))]
        self.masks = [tensors[f"mask.{i}"].bool() for i in range(len(self.ids))]

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if not self.ids:
            raise RuntimeError("real-random: fit() was not called (no training pool)")
        perm = np.random.default_rng(derive_seed(ctx.seed, self.config.pool_seed)).permutation(len(self.ids))
        for cond in conditions:
            k = int(perm[int(cond.meta["index"]) % len(perm)])
            yield Sample(image=self.images[k].float() / 255, mask=self.masks[k].clone(),
                         meta={"index": cond.meta["index"], "source_id": self.ids[k], "real": True})

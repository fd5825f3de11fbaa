"""DiDGen (thesis chapter 4; Shentu et al., MICCAI 2025): region-aware fine-tuning and training-free
lesion-mask pair generation. See README.md for every thesis-vs-code decision.

The fine-tuning, the prompts and the fitted state are `bench.diffusion.derm_t2i.DermT2I` (shared with SD-Finetune,
ZestGuide, Attn-Refocus and the dual-branch generator, issue 22); DiDGen adds its generation: layout guidance and
the attention mask read-out (`generate.py`)."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bench.diffusion.derm_t2i import DermT2I, DermT2IConfig
from bench.interface import Capabilities, Condition, RunContext, Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiDGenConfig(DermT2IConfig):
    """DiDGen hyperparameters (all of `DermT2IConfig`'s, the same order and defaults); defaults are the paper
    profile (spec sections 1.3, 1.4)."""


class DiDGen(DermT2I):
    """Fine-tunes a text-to-image UNet with the region-aware attention loss; generates images with masks read out
    of attention, following a given mask by layout guidance or unconditioned."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}))
    Config = DiDGenConfig
    version: ClassVar[str] = "1"

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from .generate import generate_pairs

        self._ensure_model()
        for chunk, prompts, seeds in self._batches(conditions, ctx):
            images, masks = generate_pairs(self.parts, prompts, [cond.mask for cond in chunk], seeds,
                                           self.placeholder_ids, self.config)
            for k, cond in enumerate(chunk):
                meta = {"prompt": prompts[k], "source_id": cond.meta.get("source_id")}
                if cond.mask is not None:
                    from bench.tasks.common import resize_mask

                    target = resize_mask(cond.mask, masks.shape[-1])
                    inter, union = (target & masks[k]).sum(), (target | masks[k]).sum()
                    meta["condition_iou"] = float(inter / union) if union else 1.0
                yield Sample(image=images[k], mask=masks[k], label=cond.label, prompt=prompts[k], meta=meta)

"""real-lowcontrast: the thesis' "Training Sample (Target)" arm (chapter 5, Table 5.3).

A data-only control: each condition carries a real training pair (its mask as the layout and the
real image as ``reference``); the "generated" sample is that real pair itself. In the lowcontrast
task the conditions are the low-contrast training images, so the segmenters are fine-tuned on the
real low-contrast pairs. With ``task.ratio > 1`` each pair is returned ``ratio`` times.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample


class RealLowContrast(GeneratorBase):
    """Returns the real pair a condition names (mask + reference image), unchanged."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        accepts=frozenset({"mask", "reference"}), returns=frozenset({"image", "mask"}),
        requires=frozenset({"mask", "reference"}))
    version: ClassVar[str] = "1"

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            if cond.reference.shape[-2:] != cond.mask.shape[-2:]:
                raise ValueError(f"condition {cond.meta.get('index')}: reference {tuple(cond.reference.shape)} "
                                 f"and mask {tuple(cond.mask.shape)} differ in size")
            yield Sample(image=cond.reference.clone(), mask=cond.mask.clone(),
                         meta={"index": cond.meta.get("index"), "source_id": cond.meta.get("source_id"), "real": True})

"""Test-only generators, importable as ``helpers:<Class>`` when tests/ is on sys.path."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample


@dataclass(frozen=True)
class NoiseConfig:
    delay: float = 0.0
    """Seconds to sleep per sample (to kill a run mid-generation)."""
    fail_after: int = -1
    """Raise after this many samples in one process (-1: never)."""


class NoisePairs(GeneratorBase):
    """Random images with their masks copied from the condition; draws from the global torch RNG."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image", "mask"}, requires={"mask"})
    Config = NoiseConfig
    made = 0

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            if self.config.fail_after >= 0 and NoisePairs.made >= self.config.fail_after:
                raise KeyboardInterrupt("simulated kill")
            if self.config.delay:
                time.sleep(self.config.delay)
                if os.environ.get("BENCH_TEST_PROGRESS_FILE"):
                    with open(os.environ["BENCH_TEST_PROGRESS_FILE"], "a") as fh:
                        fh.write(f"{cond.meta['index']}\n")
            NoisePairs.made += 1
            h, w = cond.mask.shape
            yield Sample(image=torch.rand(3, h, w), mask=cond.mask.clone(), meta={"index": cond.meta["index"]})


class ImageOnly(GeneratorBase):
    """Returns images only: incompatible with tasks that need masks."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image"})


class NotAGenerator:
    pass

"""Test-only generators, importable as ``helpers:<Class>`` when tests/ is on sys.path.

Behaviour switches come from environment variables, not the config, so that an
interrupted run and its resumption share one cache key.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample


class NoisePairs(GeneratorBase):
    """Random images (global torch RNG) with masks copied from the condition.

    BENCH_TEST_DELAY: seconds to sleep per sample; BENCH_TEST_FAIL_AFTER: raise
    KeyboardInterrupt after that many samples in this process; BENCH_TEST_PROGRESS_FILE:
    append each finished condition index there.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image", "mask"}, requires={"mask"})
    made = 0

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        fail_after = int(os.environ.get("BENCH_TEST_FAIL_AFTER", "-1"))
        delay = float(os.environ.get("BENCH_TEST_DELAY", "0"))
        for cond in conditions:
            if 0 <= fail_after <= NoisePairs.made:
                raise KeyboardInterrupt("simulated kill")
            time.sleep(delay)
            NoisePairs.made += 1
            h, w = cond.mask.shape
            yield Sample(image=torch.rand(3, h, w), mask=cond.mask.clone(), meta={"index": cond.meta["index"]})
            if os.environ.get("BENCH_TEST_PROGRESS_FILE"):
                with open(os.environ["BENCH_TEST_PROGRESS_FILE"], "a") as fh:
                    fh.write(f"{cond.meta['index']}\n")


class ImageOnly(GeneratorBase):
    """Returns images only: incompatible with tasks that need masks."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image"})


class NotAGenerator:
    pass

"""Test-only generators, importable as ``helpers:<Class>`` when tests/ is on sys.path.

Behaviour switches come from environment variables, not the config, so that an
interrupted run and its resumption share one cache key.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


class FitOnceGrey(GeneratorBase):
    """Fits a mean grey level (``fits`` counts fit calls); ``brightness`` only steers generation."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image", "mask"}, requires={"mask"})
    generation_only: ClassVar[frozenset[str]] = frozenset({"brightness"})
    fits = 0

    @dataclass(frozen=True)
    class Config:
        brightness: float = 1.0
        fit_images: int = 4

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        FitOnceGrey.fits += 1
        self.level = float(torch.stack([s.image for s in list(train)[:self.config.fit_images]]).mean())

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            h, w = cond.mask.shape
            yield Sample(image=torch.full((3, h, w), min(1.0, self.level * self.config.brightness)), mask=cond.mask.clone())

    def save(self, path) -> None:
        (path / "level.txt").write_text(repr(self.level))

    def load(self, path) -> None:
        self.level = float((path / "level.txt").read_text())


class BrighterGrey(FitOnceGrey):
    """Samples FitOnceGrey's fitted state differently: reuses its fit (``fit_from``) when the fit options agree."""

    fit_from: ClassVar[str | None] = "helpers:FitOnceGrey"
    generation_only: ClassVar[frozenset[str]] = frozenset({"brightness", "offset"})

    @dataclass(frozen=True)
    class Config:
        brightness: float = 1.0
        fit_images: int = 4
        offset: float = 0.1

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            h, w = cond.mask.shape
            level = min(1.0, self.level * self.config.brightness + self.config.offset)
            yield Sample(image=torch.full((3, h, w), level), mask=cond.mask.clone())


class NaNPairs(GeneratorBase):
    """A diverged generator: images full of NaN, masks copied from the condition."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image", "mask"}, requires={"mask"})

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            h, w = cond.mask.shape
            yield Sample(image=torch.full((3, h, w), float("nan")), mask=cond.mask.clone())


class ConstantImages(GeneratorBase):
    """Every image one flat grey (every mask copied from the condition when there is one): a degenerate but valid
    generator that metrics must score without crashing (zero variance features, identical pairs)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask", "label", "prompt"}, returns={"image", "mask"})

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            mask = cond.mask.clone() if cond.mask is not None else torch.zeros(64, 64, dtype=torch.bool)
            h, w = mask.shape
            yield Sample(image=torch.full((3, h, w), 0.5), mask=mask, label=cond.label)


class GatedFit(NoisePairs):
    """NoisePairs with a fit a test can observe and hold: it appends its pid to BENCH_TEST_FIT_LOG and, when
    BENCH_TEST_FIT_GATE names a file, waits until that file exists. BENCH_TEST_MAKER_LOG: append
    ``<pid> <condition index>`` for each sample made (which process made what)."""

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        if os.environ.get("BENCH_TEST_FIT_LOG"):
            with open(os.environ["BENCH_TEST_FIT_LOG"], "a") as fh:
                fh.write(f"{os.getpid()}\n")
        gate = os.environ.get("BENCH_TEST_FIT_GATE")
        while gate and not os.path.exists(gate):
            time.sleep(0.05)

    def save(self, path) -> None:
        from safetensors.torch import save_file

        (path / "fitted.txt").write_text("fitted")
        save_file({"w": torch.ones(2)}, str(path / "weights.safetensors"))  # as real methods save (0600)

    def load(self, path) -> None:
        if (path / "fitted.txt").read_text() != "fitted" or not (path / "weights.safetensors").is_file():
            raise RuntimeError("GatedFit: no fitted state")

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for sample in super().generate(conditions, ctx):
            if os.environ.get("BENCH_TEST_MAKER_LOG"):
                with open(os.environ["BENCH_TEST_MAKER_LOG"], "a") as fh:
                    fh.write(f"{os.getpid()} {sample.meta['index']}\n")
            yield sample

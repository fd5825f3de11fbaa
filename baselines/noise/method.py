"""noise: images (and masks) that carry no information about the task (the negative control, issue 23).

Images are random fields independent of everything the task asks for: by default smooth Gaussian fields with the
fit set's per-channel mean and standard deviation (``image: matched``; they look like the data's colours and hold no
lesion, class or structure), or uniform i.i.d. pixels (``image: uniform``). The mask is the condition's when the
task gives one (the control follows its conditions like every method; the image says nothing about it), else an
independent random blob. A given class label is echoed, so on classification tasks the images carry no information
about the label they come with. The gap ``world-oracle - noise`` is the task's dynamic range.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed


@dataclass(frozen=True)
class NoiseConfig:
    """What the noise looks like (a control of this benchmark; no paper prescribes it)."""

    image: Literal["matched", "uniform"] = "matched"
    """``matched``: smooth Gaussian fields with the fit set's per-channel mean and std; ``uniform``: i.i.d. U(0, 1)."""
    smoothness: float = 2.0
    """Gaussian blur sigma of the matched fields, in pixels at 64 px (scaled with the image side)."""
    mask: Literal["given", "random"] = "given"
    """``given``: the condition's mask when there is one (else random); ``random``: always an independent blob."""
    stats_images: int = 256
    """Fit images read for the colour statistics (the first ones)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.smoothness < 0:
            raise ConfigError(f"method.smoothness must be >= 0, got {self.smoothness}")
        if self.stats_images < 1:
            raise ConfigError(f"method.stats_images must be >= 1, got {self.stats_images}")


def _blur(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (C, H, W) with circular padding."""
    if sigma <= 0:
        return field
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=field.dtype)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = field.shape[0]
    out = field[None]
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="circular"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="circular"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out[0]


class Noise(GeneratorBase):
    """Random images with the condition's mask and label (or random ones): no information about the task."""

    # A prompt, reference image or edge map is accepted and ignored: a control that carries no information about it
    # (the floor of prompt-conditioned tasks, a chance-level annotator on skin-tone, the floor of edge-map
    # reconstruction on radimagenet-synthesis).
    capabilities: ClassVar[Capabilities] = Capabilities(
        accepts=frozenset({"mask", "label", "prompt", "reference", "edges"}),
        returns=frozenset({"image", "mask", "label"}))
    Config = NoiseConfig
    version: ClassVar[str] = "1"

    def __init__(self, config: NoiseConfig | None = None) -> None:
        super().__init__(config)
        self.state: dict[str, Any] | None = None

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        images = [train[i].image for i in range(min(len(train), self.config.stats_images)) if train[i].image is not None]
        if not images:
            raise FitSetError("noise: the fit set has no images (it reads their size and colour statistics)")
        stack = torch.stack([im.float() for im in images])
        labels = sorted({int(train[i].label) for i in range(min(len(train), self.config.stats_images))
                         if train[i].label is not None})
        self.state = {"channels": int(stack.shape[1]), "size": int(stack.shape[-1]),
                      "mean": stack.mean(dim=(0, 2, 3)).tolist(), "std": stack.std(dim=(0, 2, 3)).tolist(),
                      "labels": labels}

    def save(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "noise.json").write_text(json.dumps(self.state))

    def load(self, path: Path) -> None:
        self.state = json.loads((Path(path) / "noise.json").read_text())

    def _image(self, size: int, g: torch.Generator) -> torch.Tensor:
        st, c = self.state, self.config
        if c.image == "uniform":
            return torch.rand(st["channels"], size, size, generator=g)
        field = _blur(torch.randn(st["channels"], size, size, generator=g), c.smoothness * size / 64)
        field = field / field.flatten(1).std(dim=1).clamp_min(1e-8)[:, None, None]
        mean, std = torch.tensor(st["mean"])[:, None, None], torch.tensor(st["std"])[:, None, None]
        return (mean + std * field).clamp(0, 1)

    @staticmethod
    def _blob(size: int, g: torch.Generator) -> torch.Tensor:
        """A random blob (a thresholded smooth field, 5-40 % of the image), independent of the image."""
        field = _blur(torch.randn(1, size, size, generator=g), size / 8)[0]
        area = 0.05 + 0.35 * float(torch.rand(1, generator=g))
        return field >= torch.quantile(field.flatten(), 1 - area)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if self.state is None:
            raise RuntimeError("noise: generate before fit/load")
        for position, cond in enumerate(conditions):
            g = ctx.torch_generator(23, int(cond.meta.get("index", position)))  # shard-independent
            like = next((x for x in (cond.mask, cond.reference, cond.edges) if x is not None), None)
            size = int(like.shape[-1]) if like is not None else self.state["size"]
            image = self._image(size, g)
            mask = cond.mask.bool() if cond.mask is not None and self.config.mask == "given" else self._blob(size, g)
            label = cond.label
            if label is None and self.state["labels"]:
                label = self.state["labels"][int(torch.randint(len(self.state["labels"]), (1,), generator=g))]
            yield Sample(image=image, mask=mask, label=label, meta={"source_id": cond.meta.get("source_id")})

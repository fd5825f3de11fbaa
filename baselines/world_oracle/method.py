"""world-oracle: fresh samples from the procedural world's own generator (the positive control, issue 23).

Perfect synthetic data: drawn from exactly the distribution the task's real data come from, yet never one of its
train, val or test samples. Only a procedural world has such a generator (`WORLD_SAMPLERS`: derm-mini and the
issue-21 twins busi-mini, ddti-mini, ct-spleen-mini, mri-prostate-mini, cxr-mini, whose images follow the
condition's label vector, and concept-mini, whose renders show the condition's concepts of its scene in new poses:
an identity oracle that ignores the prompt's context words); on real data the fit stage stops with one
error line. The gap between ``world-oracle`` and ``noise`` on a task's headline metric is the task's dynamic range
(``bench table``, the leaderboard).
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.data.base import DataError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

#: Procedural worlds with a fresh-sample oracle: dataset id -> (``module:function``, caption ``module:function``).
WORLD_SAMPLERS: dict[str, tuple[str, str]] = {
    "derm-mini": ("bench.data.derm_mini:oracle_sample", "bench.data.derm_mini:caption"),
    "ph2-mini": ("bench.data.derm_mini:oracle_sample", "bench.data.derm_mini:caption"),
    "busi-mini": ("bench.data.ultrasound_mini:oracle_sample", "bench.data.ultrasound_mini:caption"),
    "ddti-mini": ("bench.data.ultrasound_mini:oracle_sample", "bench.data.ultrasound_mini:caption"),
    "ct-spleen-mini": ("bench.data.volume_mini:oracle_sample", "bench.data.volume_mini:caption"),
    "mri-prostate-mini": ("bench.data.volume_mini:oracle_sample", "bench.data.volume_mini:caption"),
    "cxr-mini": ("bench.data.cxr_mini:oracle_sample", "bench.data.cxr_mini:oracle_caption"),
    "concept-mini": ("bench.data.concept_mini:oracle_sample", "bench.data.concept_mini:oracle_caption"),
}
#: Condition meta keys a world's sampler draws from (concept-mini: which scene's concepts, and which of them).
CONDITION_KEYS: dict[str, tuple[str, ...]] = {"concept-mini": ("scene", "kind")}
#: Worlds whose sampler can draw a contrast class (``match_contrast``).
CONTRAST_WORLDS = frozenset({"derm-mini", "ph2-mini"})


@dataclass(frozen=True)
class WorldOracleConfig:
    match_contrast: bool = False
    """derm-mini: draw each lesion of its condition's contrast class (``meta["low_contrast"]``, which lowcontrast's
    conditions carry: ITA difference below 30 degrees) instead of the world's mix (about 22 % low contrast). The
    positive control of lowcontrast, whose synthetic images stand in for low-contrast lesions
    (docs/reproduce/ch5-mini.yaml); off, the oracle draws as before."""


def _import(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


class WorldOracle(GeneratorBase):
    """Draws each sample from the world's generator: of the condition's class and with its lesion mask when the
    task gives them, else unconditioned (new masks too)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "label", "labels", "prompt"}),
                                                        returns=frozenset({"image", "mask", "label", "prompt"}))
    version: ClassVar[str] = "1"
    Config = WorldOracleConfig
    options_added_later: ClassVar[frozenset[str]] = frozenset({"match_contrast"})

    def __init__(self, config: WorldOracleConfig | None = None) -> None:
        super().__init__(config)  # None: the Config defaults
        self.world: dict[str, Any] | None = None
        self.image_size: int | None = None

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        if not len(train):
            raise DataError("world-oracle: the fit set is empty; it reads the world from its samples")
        first = train[0]
        world = (first.meta or {}).get("world")
        if not isinstance(world, dict) or world.get("dataset") not in WORLD_SAMPLERS:
            sample_id = (first.meta or {}).get("id", "?")
            raise DataError(f"world-oracle needs a procedural world with a generator ({', '.join(WORLD_SAMPLERS)}); "
                            f"the fit set (sample '{sample_id}') is not from one: there is no 'perfect synthetic "
                            "data' for real datasets")
        if self.config.match_contrast and world.get("dataset") not in CONTRAST_WORLDS:
            raise DataError(f"world-oracle: method.match_contrast needs a world with contrast classes "
                            f"({', '.join(sorted(CONTRAST_WORLDS))}), not {world.get('dataset')}")
        self.world = {k: v for k, v in world.items() if k != "concepts"}
        scenes = {s.meta["scene"]: list(s.meta["world"]["concepts"]) for s in train
                  if "concepts" in ((s.meta or {}).get("world") or {})}
        if scenes:  # one fit sample per scene (the concept task): the oracle draws each scene's own concepts
            self.world["scene_concepts"] = scenes
        self.image_size = int(first.image.shape[-1]) if first.image is not None else None

    def save(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "world.json").write_text(json.dumps({"world": self.world, "image_size": self.image_size}))

    def load(self, path: Path) -> None:
        state = json.loads((Path(path) / "world.json").read_text())
        self.world, self.image_size = state["world"], state["image_size"]

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if self.world is None:
            raise RuntimeError("world-oracle: generate before fit/load")
        sample_fn, caption_fn = (_import(t) for t in WORLD_SAMPLERS[self.world["dataset"]])
        for position, cond in enumerate(conditions):
            # Keyed by the condition's index in the task (shard-independent) and the run seed.
            key = derive_seed(ctx.seed, 23, int(cond.meta.get("index", position)))
            shape = cond.mask.numpy().astype(bool) if cond.mask is not None else None
            size = shape.shape[-1] if shape is not None else self.image_size
            # label vectors (cxr-mini's findings) only for the worlds that draw from them
            vector = {} if cond.labels is None else {"labels": cond.labels.tolist()}
            vector.update({k: cond.meta.get(k) for k in CONDITION_KEYS.get(self.world["dataset"], ())})
            if self.config.match_contrast and cond.meta.get("low_contrast") is not None:
                vector["low_contrast"] = bool(cond.meta["low_contrast"])
            image, mask, meta = sample_fn(self.world, key, size, label=cond.label, shape=shape, **vector)
            label = meta.get("label")  # worlds without classes (the CT / MRI slices) have none
            yield Sample(image=torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
                         mask=None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)),
                         labels=None if cond.labels is None else cond.labels.clone(),
                         label=None if label is None else int(label), prompt=caption_fn(meta),
                         meta={"source_id": cond.meta.get("source_id"), "class_name": meta.get("class_name")})

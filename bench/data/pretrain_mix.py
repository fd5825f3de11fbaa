"""pretrain-mix-mini: the mix of procedural worlds DiffBoost pretrains its ControlNet on in the mini profile, the
mini stand-in of RadImageNet (spec B.4: a many-modality pretraining set; DiffBoost's Table I reconstructs its test
images from their edge maps).

The mix is ``worlds`` (default: cxr-mini, derm-mini at world seed 99, the generic world), each with a dataset-level
prompt ("Chest, X-ray", "Skin, Dermoscopy", "Objects, Photo"); split ``s`` of the mix is split ``s`` of every world,
the first ``sizes[s]`` samples of each, in world order. Every world renders a sample as a function of
``(world_seed, split, index)`` only, so the ``test`` split never holds a training image: DiffBoost's mini
pretraining (``methods/diffboost/train.py``) reads the ``train`` split with ``sizes.train`` = its
``pretrain_per_world``, and the radimagenet-synthesis task scores the ``test`` split. The derm-mini world is seed 99,
not the task world's 2018, and the Table II worlds (busi-mini, ct-spleen-mini, mri-prostate-mini) are left out, so
pretraining never sees a downstream test world.

Sample ids are ``<world>:<the world's id>``; ``meta["world"]`` names the world, ``Sample.prompt`` its prompt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from bench.data.base import DataError, DatasetSource, LazySamples, checksum_ids
from bench.interface import Sample

#: mix world -> (dataset id, its options, prompt). derm-mini's world seed differs from the task world's (2018).
WORLDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cxr-mini": ("cxr-mini", {}, "Chest, X-ray"),
    "derm-mini-99": ("derm-mini", {"world_seed": 99}, "Skin, Dermoscopy"),
    "generic-world": ("generic-world", {}, "Objects, Photo"),
}
DEFAULT_WORLDS = tuple(WORLDS)
#: samples per world and split (train: DiffBoost's mini ``pretrain_per_world``)
DEFAULT_SIZES = {"train": 200, "val": 20, "test": 100}


def world_dataset(name: str, image_size: int | None, sizes: dict[str, int]) -> DatasetSource:
    """The dataset of mix world ``name`` at ``image_size`` with ``sizes`` samples per split."""
    if name not in WORLDS:
        raise DataError(f"unknown mix world '{name}'; valid: {', '.join(WORLDS)}")
    dataset_id, options, _ = WORLDS[name]
    if dataset_id == "generic-world":
        from bench.data.generic_world import GenericWorld as cls
    else:
        from bench.registry import DATASETS

        cls = DATASETS.get(dataset_id)
    return cls(root=None, image_size=image_size, sizes=sizes, **options)


class PretrainMixMini(DatasetSource):
    """The mini pretraining mix: images and prompts, no masks (see the module docstring).

    Options:
        worlds: the mixed worlds (keys of `WORLDS`), default all three.
        sizes: samples per world and split, default ``{"train": 200, "val": 20, "test": 100}``.
    """

    id: ClassVar[str] = "pretrain-mix-mini"
    fields: ClassVar[frozenset[str]] = frozenset({"image", "prompt"})
    needs_root: ClassVar[bool] = False

    def __init__(self, root: Path | None = None, image_size: int | None = 32, worlds: Any = DEFAULT_WORLDS,
                 sizes: dict[str, int] | None = None, **options: Any) -> None:
        if options:
            raise DataError(f"pretrain-mix-mini: unknown option(s) {', '.join(sorted(options))}; valid: worlds, sizes")
        super().__init__(root, image_size or 32)
        self.worlds = tuple(worlds)
        unknown = [w for w in self.worlds if w not in WORLDS]
        if unknown or not self.worlds:
            raise DataError(f"pretrain-mix-mini: unknown world(s) {', '.join(unknown) or '(none given)'}; "
                            f"valid: {', '.join(WORLDS)}")
        self.sizes = {**DEFAULT_SIZES, **(sizes or {})}
        for split, n in self.sizes.items():
            if split not in self.splits:
                raise DataError(f"pretrain-mix-mini: unknown split '{split}' in sizes; splits: train, val, test")
            if not isinstance(n, int) or n < 0:
                raise DataError(f"pretrain-mix-mini: sizes.{split} must be an integer >= 0, got {n!r}")

    def _world(self, name: str, split: str) -> DatasetSource:
        return world_dataset(name, self.image_size, {split: self.sizes[split]})

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        return [f"{w}:{sid}" for w in self.worlds for sid in self._world(w, split).split_ids(split)[:self.sizes[split]]]

    def split_checksum(self, split: str) -> str:
        # each world's own checksum names its generator version and image size
        parts = [f"{w}={self._world(w, split).split_checksum(split)}" for w in self.worlds]
        return checksum_ids([*self.split_ids(split), *parts, "generator=pretrain-mix-mini/1"])

    def load(self, split: str) -> LazySamples:
        self._check_split(split)
        ids = self.split_ids(split)
        where = []  # (world, index in the world's split) per mix index
        for w in self.worlds:
            where += [(w, j) for j in range(sum(1 for sid in ids if sid.startswith(f"{w}:")))]
        loaded: dict[str, Any] = {}

        def load_one(index: int, sample_id: str) -> Sample:
            world, j = where[index]
            if world not in loaded:
                loaded[world] = self._world(world, split).load(split)
            inner = loaded[world][j]
            meta = {**inner.meta, "id": sample_id, "world": world, "world_id": inner.meta.get("id"), "split": split}
            return Sample(image=inner.image, prompt=WORLDS[world][2], meta=meta)

        return LazySamples(ids, load_one)

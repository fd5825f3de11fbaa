"""What every dataset (real or procedural) provides to the tasks.

A dataset is a class registered in ``bench.registry.DATASETS``. It is built as
``Dataset(root=..., image_size=..., **options)`` and gives, per split, a lazy
sequence of `Sample`s plus a checksum of the split's id list. The checksum goes
into every run's protocol hash, so results made on different splits are never
compared by accident.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, overload

from bench.interface import Sample


class DataError(ValueError):
    """A dataset folder, file or option is not what the loader expects (one line)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset folder, as ``bench data check`` reports it."""

    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


class LazySamples(Sequence[Sample]):
    """A sequence of samples built on access from a list of ids.

    Args:
        ids: the dataset's own ids, in split order.
        load: ``load(index, id) -> Sample``.
    """

    def __init__(self, ids: Sequence[str], load: Callable[[int, str], Sample]) -> None:
        self.ids = list(ids)
        self._load = load

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._load(i, self.ids[i])

    def map(self, fn: Callable[[Sample], Sample]) -> LazySamples:
        """The same ids with ``fn`` applied to each sample on access (still lazy)."""
        return LazySamples(self.ids, lambda i, sid: fn(self._load(i, sid)))

    def subset(self, indices: Sequence[int]) -> LazySamples:
        chosen = [self.ids[i] for i in indices]
        index_of = {sid: i for i, sid in enumerate(self.ids)}
        return LazySamples(chosen, lambda _, sid: self._load(index_of[sid], sid))


def checksum_ids(ids: Sequence[str]) -> str:
    """SHA-256 of the newline-joined ids: the checksum of a split."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


class DatasetSource:
    """Base class of datasets.

    Class attributes:
        id: registry id.
        splits: split names in canonical order.
        fields: Sample fields every sample carries.
        class_names: class order for ``Sample.label`` (empty if unlabelled).
        needs_root: True for real datasets that read ``--data-root``.
    """

    id: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    fields: ClassVar[frozenset[str]] = frozenset()
    class_names: ClassVar[tuple[str, ...]] = ()
    needs_root: ClassVar[bool] = True

    def __init__(self, root: Path | None = None, image_size: int | None = None, **options: Any) -> None:
        self.root = Path(root) if root is not None else None
        self.image_size = image_size
        self.options = options

    def split_ids(self, split: str) -> list[str]:
        raise NotImplementedError

    def sample_cases(self, split: str) -> list[str | None] | None:
        """The case (patient) of each id of ``split_ids(split)``, in that order, as ``meta["case"]`` gives it (None: the
        sample is its own case); None when it cannot be known without the data. Submission checks read it to know
        which ids a case-level fold, or a per-case score, covers."""
        return None

    def load(self, split: str) -> LazySamples:
        raise NotImplementedError

    def split_checksum(self, split: str) -> str:
        return checksum_ids(self.split_ids(split))

    def check(self) -> list[Problem]:
        """Problems with the data folder (empty list when all is well)."""
        return []

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(f"dataset '{self.id}' has no split '{split}'; splits: {', '.join(self.splits)}")

"""The common machinery of the real-dataset loaders.

A real dataset subclasses `RealDataset` and implements `RealDataset.scan`, which
reads the folder layout (and CSVs) into `Record`s, one per sample, and reports
what is wrong with the layout as `Problem`s. Everything else is shared here:
finding the folder under ``--data-root``, official / committed / derived splits,
lazy loading with resizing, and ``check()`` (counts against the card, unreadable
images, non-binary masks, image-mask size mismatches).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data import io as dio
from bench.data.base import DataError, DatasetSource, LazySamples, Problem, checksum_ids
from bench.data.cards import card_path, expected_count, file_sha256, load_card, split_file
from bench.data.splits import ALGORITHM, assign_splits, read_split_csv
from bench.interface import Sample

logger = logging.getLogger(__name__)

#: Name of the pseudo-split holding every sample (datasets the thesis uses whole as a test set).
ALL = "all"


@dataclass
class Record:
    """One sample as found on disk, before decoding.

    Attributes:
        id: the dataset's own id (``ISIC_0000000``, ``IMD002``, ``benign (1)`` ...).
        image: image file (None for report-only samples).
        masks: mask files; several are united (BUSI), none means no mask.
        label: class index into the card's class order.
        labels: multi-hot vector (K,) as floats.
        report: report text.
        prompt: text prompt.
        meta: extra fields copied into ``Sample.meta``.
        split: official split when the layout gives one.
        group: patient / lesion / volume id: derived splits keep a group together.
        stratum: stratification key of derived splits (usually the class).
    """

    id: str
    image: Path | None = None
    masks: tuple[Path, ...] = ()
    label: int | None = None
    labels: tuple[float, ...] | None = None
    report: str | None = None
    prompt: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    group: str | None = None
    stratum: str | None = None


class FileSamples(LazySamples):
    """`LazySamples` that can also decode a sample's files without building it (for `verify_samples`)."""

    def __init__(self, ids: Sequence[str], load: Any, verify: Any) -> None:
        super().__init__(ids, load)
        self._verify = verify

    def verify(self, i: int) -> None:
        """Decode the files behind sample ``i``; raises DataError naming the file that fails."""
        self._verify(self.ids[i])

    def subset(self, indices: Sequence[int]) -> FileSamples:
        base = super().subset(indices)
        return FileSamples(base.ids, base._load, self._verify)


class RealDataset(DatasetSource):
    """Base class of the loaders of public datasets read from ``--data-root``.

    Class attributes (besides those of `DatasetSource`):
        option_defaults: the dataset's options and their defaults; any other option is an error.
        split_mode: ``official`` (the layout says), ``committed`` (``datasets/splits/<id>.csv``)
            or ``derived`` (`assign_splits` with the card's ``derived_split`` settings at load time).
        channels: 3 (RGB) or 1 (greyscale) for decoded images.
        mask_threshold: foreground is ``value > mask_threshold`` (None: > 127 for 8-bit, else > 0).
        binary_masks: whether ``check`` flags masks with more than two values.
    """

    option_defaults: ClassVar[dict[str, Any]] = {}
    split_mode: ClassVar[str] = "official"
    channels: ClassVar[int] = 3
    mask_threshold: ClassVar[float | None] = None
    binary_masks: ClassVar[bool] = True

    def __init__(self, root: Path | None = None, image_size: int | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            valid = ", ".join(sorted(self.option_defaults)) or "none"
            raise DataError(f"dataset '{self.id}': unknown option(s) {', '.join(unknown)}; valid options: {valid}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
            raise DataError(f"dataset '{self.id}': image_size must be an integer >= 8 or None, got {image_size!r}")
        super().__init__(root, image_size, **{**self.option_defaults, **options})
        self.card = load_card(self.id)
        card_classes = tuple(self.card.get("classes") or ())
        if card_classes != tuple(self.class_names):
            raise DataError(f"{card_path(self.id)}: classes {list(card_classes)} differ from the loader's "
                            f"{list(self.class_names)}")

    # ---- layout -------------------------------------------------------------------------------
    def folder_names(self) -> list[str]:
        """Folder names tried under ``--data-root`` (from the card), then the root itself."""
        return list(self.card["folder"].get("names", []))

    def looks_like(self, folder: Path) -> bool:
        """True when ``folder`` has the dataset's top-level layout (override per dataset)."""
        return folder.is_dir()

    @cached_property
    def folder(self) -> Path:
        """The dataset folder: the first ``<root>/<name>`` of the card that looks right, else the root.

        Raises:
            DataError: when no root is given or nothing under it has the expected layout.
        """
        where = f"expected layout: {card_path(self.id).name} in the data cards ('bench data info {self.id}')"
        if self.root is None:
            raise DataError(f"dataset '{self.id}' needs --data-root (the folder holding "
                            f"{' or '.join(self.folder_names()) or 'it'}; {where})")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: missing folder (--data-root of dataset '{self.id}')")
        for name in self.folder_names():
            candidate = self.root / name
            if self.looks_like(candidate):
                return candidate
        if self.looks_like(self.root):
            return self.root
        names = " or ".join(f"{n}/" for n in self.folder_names())
        raise DataError(f"{self.root}: missing folder {names} with the layout of '{self.id}' ({where})")

    def scan(self) -> tuple[list[Record], list[Problem]]:
        """Read the layout: one `Record` per sample, plus the problems found on the way."""
        raise NotImplementedError

    @cached_property
    def _scanned(self) -> tuple[list[Record], list[Problem]]:
        records, problems = self.scan()
        seen: set[str] = set()
        for rec in records:
            if rec.id in seen:
                raise DataError(f"{self.folder}: duplicate sample id '{rec.id}'")
            seen.add(rec.id)
        return records, problems

    @cached_property
    def records(self) -> dict[str, Record]:
        """id -> Record of every sample found."""
        return {rec.id: rec for rec in self._scanned[0]}

    # ---- splits -------------------------------------------------------------------------------
    @cached_property
    def _assignment(self) -> dict[str, str]:
        records = self._scanned[0]
        if self.split_mode == "official":
            return {rec.id: rec.split for rec in records if rec.split is not None}
        if self.split_mode == "committed":
            return self._committed_assignment()
        if self.split_mode == "derived":
            return self._derived_assignment(records)
        raise DataError(f"dataset '{self.id}': unknown split_mode {self.split_mode!r}")

    def _committed_assignment(self) -> dict[str, str]:
        path = split_file(self.id)
        expected = (self.card.get("split_file") or {}).get("sha256")
        if expected and path.is_file() and file_sha256(path) != expected:
            raise DataError(f"{path}: split file checksum {file_sha256(path)[:12]}... differs from the card's "
                            f"{expected[:12]}... (the standard split was edited)")
        return {sid: split for split, ids in read_split_csv(path).items() for sid in ids}

    def derived_settings(self) -> dict[str, Any]:
        """The card's ``derived_split`` settings: fractions, seed, stratify, group."""
        settings = self.card.get("derived_split")
        if not settings:
            raise DataError(f"{card_path(self.id)}: split_mode 'derived' needs a derived_split section")
        if settings.get("algorithm") != ALGORITHM:
            raise DataError(f"{card_path(self.id)}: derived_split.algorithm must be '{ALGORITHM}'")
        return settings

    def _derived_assignment(self, records: list[Record]) -> dict[str, str]:
        settings = self.derived_settings()
        ids = [rec.id for rec in records]
        strata = {rec.id: rec.stratum or "" for rec in records} if settings.get("stratify") else None
        groups = {rec.id: rec.group or rec.id for rec in records} if settings.get("group") else None
        return assign_splits(ids, settings["fractions"], int(settings["seed"]), strata=strata, groups=groups)

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        if split == ALL:
            return sorted(rec.id for rec in self._scanned[0])
        records = self.records
        chosen = sorted(sid for sid, s in self._assignment.items() if s == split)
        missing = [sid for sid in chosen if sid not in records]
        if missing:
            raise DataError(f"{self.folder}: {len(missing)} id(s) of split '{split}' not found, e.g. {missing[0]} "
                            f"(run 'bench data check {self.id} --root {self.root}')")
        return chosen

    def split_checksum(self, split: str) -> str:
        """SHA-256 of the split's sorted id list (see `bench.data.base.checksum_ids`)."""
        return checksum_ids(self.split_ids(split))

    # ---- loading ------------------------------------------------------------------------------
    def read_pixels(self, rec: Record) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Decode a record: (image (H, W, C) float [0, 1] | None, mask bool (H, W) | None)."""
        image = dio.read_image(rec.image, self.channels) if rec.image is not None else None
        mask = dio.union_masks(rec.masks, self.mask_threshold) if rec.masks else None
        if image is not None and mask is not None and image.shape[:2] != mask.shape:
            raise DataError(f"{rec.masks[0]}: mask size {mask.shape[::-1]} differs from image size "
                            f"{image.shape[1::-1]} of {rec.image.name}")
        return image, mask

    def make_sample(self, rec: Record, split: str) -> Sample:
        image, mask = self.read_pixels(rec)
        image_t, mask_t = dio.to_tensors(image, mask, self.image_size)
        import torch

        labels = torch.tensor(rec.labels, dtype=torch.float32) if rec.labels is not None else None
        meta = {"id": rec.id, "dataset": self.id, "split": split, **rec.meta}
        if rec.image is not None:
            meta.setdefault("path", str(rec.image))
        return Sample(image=image_t, mask=mask_t, label=rec.label, labels=labels, report=rec.report,
                      prompt=rec.prompt, meta=meta)

    def verify_record(self, rec: Record) -> None:
        """Decode the files of one record and check them as `check` does (a mask of another size than its image,
        a non-binary mask); raises DataError naming the first bad file."""
        problems = self._file_problems(rec)
        if problems:
            raise DataError(str(problems[0]))

    def load(self, split: str) -> FileSamples:
        ids = self.split_ids(split)
        records = self.records
        return FileSamples(ids, lambda _, sid: self.make_sample(records[sid], split),
                           lambda sid: self.verify_record(records[sid]))

    # ---- check --------------------------------------------------------------------------------
    def check(self, decode: bool = True) -> list[Problem]:
        """Everything wrong with the folder, one `Problem` per file (empty when all is well).

        Args:
            decode: also decode every image and mask (unreadable files, non-binary masks, size
                mismatches); False checks only layout and counts.
        """
        try:
            records, problems = self._scanned
        except DataError as exc:
            return [_problem_from_error(exc)]
        problems = list(problems)
        try:
            assignment = self._assignment
        except DataError as exc:
            return problems + [_problem_from_error(exc)]
        by_id = {rec.id: rec for rec in records}
        for sid, split in sorted(assignment.items()):
            if sid not in by_id:
                problems.append(Problem(str(self.folder), f"id '{sid}' of split '{split}' has no files"))
        problems += self._count_problems(records, assignment)
        if decode:
            for rec in records:
                problems += self._file_problems(rec)
        return problems

    def _count_problems(self, records: list[Record], assignment: dict[str, str]) -> list[Problem]:
        problems = []
        present = {rec.id for rec in records}
        total = self.card.get("count_total")
        if total is not None and len(records) != int(total):
            problems.append(Problem(str(self.folder), f"wrong count: {len(records)} samples, card expects {total}"))
        for split in self.splits:
            if split == ALL:
                continue
            want = expected_count(self.card, split)
            if want is None:
                continue
            have = sum(1 for sid, s in assignment.items() if s == split and sid in present)
            if have != want:
                problems.append(Problem(str(self.folder), f"wrong count: split '{split}' has {have} samples, "
                                                          f"card expects {want}"))
        return problems

    def _file_problems(self, rec: Record) -> list[Problem]:
        problems: list[Problem] = []
        image_shape = None
        if rec.image is not None:
            try:
                image_shape = dio.read_image(rec.image, self.channels).shape[:2]
            except DataError as exc:
                problems.append(_problem_from_error(exc))
        for mask_path in rec.masks:
            try:
                raw = dio.read_mask_array(mask_path)
            except DataError as exc:
                problems.append(_problem_from_error(exc))
                continue
            if self.binary_masks:
                values = dio.non_binary_values(raw)
                if values is not None:
                    problems.append(Problem(str(mask_path), f"non-binary mask: values {values}"))
            if image_shape is not None and raw.shape[:2] != image_shape:
                problems.append(Problem(str(mask_path), f"size mismatch: mask {raw.shape[1]}x{raw.shape[0]}, "
                                                        f"image {image_shape[1]}x{image_shape[0]}"))
        return problems


def _problem_from_error(exc: DataError) -> Problem:
    """Turn a one-line ``"<file>: <what>"`` DataError into a Problem."""
    text = str(exc)
    path, sep, what = text.partition(": ")
    return Problem(path, what) if sep else Problem("", text)


def pair_by_stem(image_dir: Path, mask_dir: Path, mask_name: Any, problems: list[Problem],
                 image_filter: Any = None) -> list[tuple[str, Path, Path | None]]:
    """Pair every image in ``image_dir`` with its mask in ``mask_dir``.

    Args:
        image_dir, mask_dir: the two folders (missing folders are reported, not raised).
        mask_name: ``stem -> mask file name``; matched case-insensitively.
        problems: list the problems are appended to (missing mask, mask without image).
        image_filter: optional ``path -> bool`` choosing which image files count.

    Returns:
        ``(stem, image path, mask path or None)`` per image, sorted by stem.
    """
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            problems.append(Problem(str(folder), "missing folder"))
    if not image_dir.is_dir():
        return []
    masks = {p.name.lower(): p for p in dio.list_images(mask_dir)} if mask_dir.is_dir() else {}
    used: set[str] = set()
    pairs = []
    for image in dio.list_images(image_dir):
        if image_filter is not None and not image_filter(image):
            continue
        wanted = mask_name(image.stem).lower()
        mask = masks.get(wanted)
        if mask is None:
            if mask_dir.is_dir():
                problems.append(Problem(str(image), f"missing mask {mask_dir.name}/{mask_name(image.stem)}"))
        else:
            used.add(wanted)
        pairs.append((image.stem, image, mask))
    for name, mask in sorted(masks.items()):
        if name not in used:
            problems.append(Problem(str(mask), "unpaired mask: no image with this id"))
    return pairs

"""Medical Segmentation Decathlon volumes sliced to 2D (DiffBoost; research/papers_meddiff_diffboost.md B.8).

``Task09_Spleen`` (41 labelled CT volumes) and ``Task05_Prostate`` (32 labelled MRI volumes,
T2 + ADC) in the MSD layout: ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json``. Volumes are read with nibabel and cut into axial slices (slice depth one);
as in DiffBoost's preprocessing, only slices with more than ``min_foreground`` (20) foreground
pixels are kept, and each slice's intensities are clipped to its [0.5, 99.5] percentiles and
scaled to [0, 1] (DiffBoost scales to [-1, 1]; the harness's Sample range is [0, 1]). For CT
the lower clip is at least -256 HU. Splits are at case level: test is fold ``fold`` of an
unshuffled 3-fold KFold over the sorted cases (DiffBoost's code); the remaining cases are
split into train and val (val: ``val_fraction`` of them, seeded).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import DataError, Problem
from bench.data.real import Record, RealDataset
from bench.data.splits import assign_splits, kfold_assign

logger = logging.getLogger(__name__)


def _is_volume(path: Path) -> bool:
    # The MSD tarballs carry macOS "._spleen_1.nii.gz" resource files: skip them.
    return path.name.endswith((".nii.gz", ".nii")) and not path.name.startswith(".")


def _case_name(path: Path) -> str:
    return path.name[:-7] if path.name.endswith(".nii.gz") else path.stem


def load_volume(path: Path) -> np.ndarray:
    """Decode a NIfTI file to a numpy array (float32 for images, as stored for labels).

    Raises:
        DataError: naming the file when nibabel cannot read it.
    """
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # nibabel raises several types (ImageFileError, EOFError, zlib.error, ...)
        raise DataError(f"{path}: unreadable NIfTI volume ({type(exc).__name__}: {exc})") from exc


def normalise_slice(values: np.ndarray, percentiles: tuple[float, float], floor: float | None) -> np.ndarray:
    """Clip a 2D slice to its intensity percentiles (lower clip >= ``floor`` if set) and scale to [0, 1]."""
    low, high = np.percentile(values, percentiles)
    if floor is not None:
        low = max(low, floor)
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)


class MsdTask(RealDataset):
    """One MSD task as 2D axial slices: image (1, H, W) in [0, 1], binary mask, meta case and z.

    Options:
        fold: test fold 0..n_folds-1 of the case-level KFold (default 0).
        n_folds: number of folds (default 3, DiffBoost).
        val_fraction: share of the non-test cases used for validation (default 0.15, seed ``val_seed``).
        val_seed: seed of the validation draw.
        min_foreground: keep slices with more foreground pixels than this (default 20).
        percentiles: intensity clip percentiles (default (0.5, 99.5)).
    """

    task_folder: ClassVar[str] = ""
    ct_floor: ClassVar[float | None] = None
    fields = frozenset({"image", "mask"})
    channels = 1
    split_mode = "derived"
    option_defaults: ClassVar[dict[str, Any]] = {"fold": 0, "n_folds": 3, "val_fraction": 0.15, "val_seed": 2022,
                                                 "min_foreground": 20, "percentiles": (0.5, 99.5)}

    def looks_like(self, folder: Path) -> bool:
        return (folder / "imagesTr").is_dir() and (folder / "labelsTr").is_dir()

    def foreground(self, label: np.ndarray) -> np.ndarray:
        """Binary foreground of a label volume (all non-zero labels)."""
        return label > 0

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        meta_file = self.folder / "dataset.json"
        if not meta_file.is_file():
            problems.append(Problem(str(meta_file), "missing file"))
        else:
            try:
                json.loads(meta_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                problems.append(Problem(str(meta_file), f"not valid JSON ({exc})"))
        images = {_case_name(p): p for p in sorted((self.folder / "imagesTr").iterdir()) if _is_volume(p)}
        labels = {_case_name(p): p for p in sorted((self.folder / "labelsTr").iterdir()) if _is_volume(p)}
        for case in sorted(set(images) - set(labels)):
            problems.append(Problem(str(images[case]), f"missing mask labelsTr/{images[case].name}"))
        for case in sorted(set(labels) - set(images)):
            problems.append(Problem(str(labels[case]), "unpaired mask: no image with this case id"))
        records = []
        for case in sorted(set(images) & set(labels)):
            try:
                fg = self.foreground(load_volume(labels[case]))
            except DataError as exc:
                problems.append(Problem(str(labels[case]), str(exc).split(": ", 1)[-1]))
                continue
            if fg.ndim != 3:
                problems.append(Problem(str(labels[case]), f"label volume has {fg.ndim} dimensions, expected 3"))
                continue
            counts = fg.reshape(-1, fg.shape[2]).sum(axis=0)
            for z in np.nonzero(counts > int(self.options["min_foreground"]))[0]:
                records.append(Record(f"{case}:z{int(z):03d}", images[case], (labels[case],), group=case,
                                      meta={"case": case, "z": int(z), "foreground_pixels": int(counts[z])}))
        return records, problems

    def _derived_assignment(self, records: list[Record]) -> dict[str, str]:
        cases = sorted({rec.group for rec in records})
        train_cases, test_cases = kfold_assign(cases, int(self.options["n_folds"]), int(self.options["fold"]))
        fraction = float(self.options["val_fraction"])
        inner = assign_splits(train_cases, {"train": 1.0 - fraction, "val": fraction}, int(self.options["val_seed"]))
        case_split = {**inner, **{c: "test" for c in test_cases}}
        return {rec.id: case_split[rec.group] for rec in records}

    def _volume_pair(self, rec: Record) -> tuple[np.ndarray, np.ndarray]:
        cache = self.__dict__.setdefault("_volume_cache", {})
        key = rec.meta["case"]
        if key not in cache:
            cache.clear()  # one volume pair at a time: slices are read case by case
            image = self.select_channel(load_volume(rec.image).astype(np.float32), rec.image)
            label = self.foreground(load_volume(rec.masks[0]))
            if image.shape[:3] != label.shape[:3]:
                raise DataError(f"{rec.masks[0]}: size mismatch: label {label.shape} vs image {image.shape}")
            cache[key] = (image, label)
        return cache[key]

    def select_channel(self, volume: np.ndarray, path: Path) -> np.ndarray:
        """The 3D volume to slice (4D multi-modal volumes choose a channel)."""
        if volume.ndim != 3:
            raise DataError(f"{path}: image volume has {volume.ndim} dimensions, expected 3")
        return volume

    def read_pixels(self, rec: Record) -> tuple[np.ndarray, np.ndarray]:
        image, label = self._volume_pair(rec)
        z = rec.meta["z"]
        # NIfTI arrays are (x, y, z): transpose a slice to (rows = y, cols = x).
        pixels = normalise_slice(image[:, :, z].T, tuple(self.options["percentiles"]), self.ct_floor)
        return pixels[..., None], np.ascontiguousarray(label[:, :, z].T)

    def verify_record(self, rec: Record) -> None:
        self._volume_pair(rec)

    def _file_problems(self, rec: Record) -> list[Problem]:
        if rec.meta["case"] in self.__dict__.setdefault("_checked_cases", set()):
            return []
        self._checked_cases.add(rec.meta["case"])
        try:
            self._volume_pair(rec)
        except DataError as exc:
            path, _, what = str(exc).partition(": ")
            return [Problem(path, what)]
        return []


class MsdSpleen(MsdTask):
    """MSD Task09_Spleen: 41 labelled portal-venous CT volumes (label 1 = spleen)."""

    id = "msd-spleen"
    ct_floor = -256.0


class MsdProstate(MsdTask):
    """MSD Task05_Prostate: 32 labelled T2/ADC MRI volumes; whole gland = peripheral | transition zone.

    Options (besides `MsdTask`'s):
        modality: channel of the 4D image volume: 0 = T2 (default), 1 = ADC. DiffBoost's config uses
            one input channel without saying which; T2 is the anatomical one.
    """

    id = "msd-prostate"
    option_defaults = {**MsdTask.option_defaults, "modality": 0}

    def select_channel(self, volume: np.ndarray, path: Path) -> np.ndarray:
        if volume.ndim == 4:
            channel = int(self.options["modality"])
            if not 0 <= channel < volume.shape[3]:
                raise DataError(f"{path}: modality {channel} not in 0..{volume.shape[3] - 1}")
            return volume[..., channel]
        return super().select_channel(volume, path)


__all__ = ["MsdProstate", "MsdSpleen", "MsdTask"]

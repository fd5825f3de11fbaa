"""ISIC challenge sets and HAM10000 (research/ch4_didgen.md section 7, ch5_lowcontrast.md).

* ``isic2018-task1``: lesion boundary segmentation, official train 2594 / val 100 / test 1000.
* ``isic2018-task3``: 7-class diagnosis, official train 10015 / val 193 / test 1512, one-hot CSVs.
* ``isic2017`` / ``isic2016``: Part 1 segmentation sets (extra segmentation data, MedDiff-FT).
* ``ham10000``: the 10015 HAM10000 images with their metadata CSV and, when present, the
  Tschandl et al. 2020 lesion masks; split by lesion with a recorded seed.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any, ClassVar

from bench.data import io as dio
from bench.data.base import DataError, Problem
from bench.data.real import ALL, Record, RealDataset, pair_by_stem
from bench.data.splits import assign_splits

logger = logging.getLogger(__name__)

#: HAM10000 / ISIC 2018 Task 3 class order used everywhere (research/ch4_didgen.md section 7.2).
HAM_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC_ID = re.compile(r"^ISIC_\d{7}$")


def is_isic_image(path: Path) -> bool:
    """ISIC image files only: skips ``*_superpixels.png`` (2017), LICENSE.txt, ATTRIBUTION.txt."""
    return bool(ISIC_ID.match(path.stem))


class IsicSegmentation(RealDataset):
    """ISIC image-mask pairs in the official folder layout.

    Class attributes:
        layout: split -> (image folder, mask folder), as distributed.
        mask_suffix: appended to the image id to name its mask (matched case-insensitively).
    """

    layout: ClassVar[dict[str, tuple[str, str]]] = {}
    mask_suffix: ClassVar[str] = "_segmentation.png"
    fields = frozenset({"image", "mask"})

    def looks_like(self, folder: Path) -> bool:
        return any((folder / images).is_dir() for images, _ in self.layout.values())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        records = []
        for split, (image_dir, mask_dir) in self.layout.items():
            pairs = pair_by_stem(self.folder / image_dir, self.folder / mask_dir,
                                 lambda stem: stem + self.mask_suffix, problems, image_filter=is_isic_image)
            for stem, image, mask in pairs:
                records.append(Record(stem, image, (mask,) if mask else (), split=split, meta={"official_split": split}))
        return records, problems

    def load(self, split: str):
        samples = super().load(split)
        missing = [sid for sid in samples.ids if not self.records[sid].masks]
        if missing:
            raise DataError(f"{self.folder}: {len(missing)} image(s) of split '{split}' have no mask, e.g. "
                            f"{self.records[missing[0]].image} (run 'bench data check {self.id}')")
        return samples


class Isic2018Task1(IsicSegmentation):
    """ISIC 2018 Task 1 lesion boundary segmentation (Codella et al. 2019); official splits."""

    id = "isic2018-task1"
    layout = {
        "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    }


class Isic2017(IsicSegmentation):
    """ISIC 2017 Part 1 lesion segmentation (Codella et al. 2018); official splits (test = Test_v2)."""

    id = "isic2017"
    layout = {
        "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    }


class Isic2016(IsicSegmentation):
    """ISBI 2016 ISIC Part 1 lesion segmentation (Gutman et al. 2016).

    The release has no validation set; ``val`` is carved from the official training set
    (``val_fraction`` of it, seed ``val_seed``, both recorded in the card); test is as distributed.

    Options:
        val_fraction: share of the official training images moved to ``val`` (default 0.1).
        val_seed: seed of that draw (default 2016).
    """

    id = "isic2016"
    layout = {
        "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    }
    mask_suffix = "_Segmentation.png"
    option_defaults = {"val_fraction": 0.1, "val_seed": 2016}

    def scan(self) -> tuple[list[Record], list[Problem]]:
        records, problems = super().scan()
        train = [rec.id for rec in records if rec.split == "train"]
        fraction = float(self.options["val_fraction"])
        chosen = assign_splits(train, {"train": 1.0 - fraction, "val": fraction}, int(self.options["val_seed"]))
        for rec in records:
            if rec.split == "train":
                rec.split = chosen[rec.id]
        return records, problems


def _read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV (or tab-separated ``.tab``) file."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        delimiter = "\t" if path.suffix.lower() in (".tab", ".tsv") or sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


class Isic2018Task3(RealDataset):
    """ISIC 2018 Task 3 lesion diagnosis: images plus one-hot ground-truth CSVs (official splits).

    Only the seven class columns are read, by name (newer truth files add score_weight columns).
    The training lesion groupings CSV, when present, adds ``lesion_id`` and ``diagnosis_confirm_type``.
    """

    id = "isic2018-task3"
    fields = frozenset({"image", "label"})
    class_names = HAM_CLASSES
    layout: ClassVar[dict[str, tuple[str, str]]] = {
        "train": ("ISIC2018_Task3_Training_Input", "ISIC2018_Task3_Training_GroundTruth"),
        "val": ("ISIC2018_Task3_Validation_Input", "ISIC2018_Task3_Validation_GroundTruth"),
        "test": ("ISIC2018_Task3_Test_Input", "ISIC2018_Task3_Test_GroundTruth"),
    }

    def looks_like(self, folder: Path) -> bool:
        return any((folder / images).is_dir() for images, _ in self.layout.values())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        records: list[Record] = []
        groupings = self._groupings()
        for split, (image_dir, truth_dir) in self.layout.items():
            images_path = self.folder / image_dir
            truth = self.folder / truth_dir / f"{truth_dir}.csv"
            if not images_path.is_dir():
                problems.append(Problem(str(images_path), "missing folder"))
                continue
            if not truth.is_file():
                problems.append(Problem(str(truth), "missing ground-truth CSV"))
                continue
            images = {p.stem: p for p in dio.list_images(images_path) if is_isic_image(p)}
            header, rows = _read_csv_rows(truth)
            absent = [c for c in ("image", *self.class_names) if c not in header]
            if absent:
                problems.append(Problem(str(truth), f"missing column(s) {', '.join(absent)}; has {', '.join(header)}"))
                continue
            listed = set()
            for line, row in enumerate(rows, start=2):
                sid = row["image"].strip()
                listed.add(sid)
                hot = [float(row[c] or 0) for c in self.class_names]
                if sum(1 for v in hot if v > 0.5) != 1:
                    problems.append(Problem(str(truth), f"line {line} ({sid}): not one-hot over {','.join(self.class_names)}"))
                    continue
                if sid not in images:
                    problems.append(Problem(str(images_path / f"{sid}.jpg"), "missing image listed in the ground truth"))
                    continue
                label = max(range(len(hot)), key=hot.__getitem__)
                meta = {"class_name": self.class_names[label], **groupings.get(sid, {})}
                records.append(Record(sid, images[sid], label=label, split=split, stratum=self.class_names[label],
                                      meta=meta))
            for sid in sorted(set(images) - listed):
                problems.append(Problem(str(images[sid]), "unpaired image: not in the ground-truth CSV"))
        return records, problems

    def _groupings(self) -> dict[str, dict[str, Any]]:
        path = self.folder / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_LesionGroupings.csv"
        if not path.is_file():
            return {}
        _, rows = _read_csv_rows(path)
        return {row["image"]: {"lesion_id": row.get("lesion_id"), "diagnosis_confirm_type": row.get("diagnosis_confirm_type")}
                for row in rows}


class Ham10000(RealDataset):
    """HAM10000 (Tschandl et al. 2018) with optional lesion masks (Tschandl et al. 2020).

    Images are read from ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/`` (or one
    ``HAM10000_images/`` folder); metadata from ``HAM10000_metadata.csv`` (or the Dataverse
    ``.tab``). There is no official split: train/val/test are derived by lesion (``lesion_id``,
    so images of one lesion stay together), stratified by ``dx``, with the card's seed. The
    thesis (chapter 5) uses all 10015 as an external test set: split ``all``.

    Options:
        require_masks: when True (default False), images without a mask are an error at load.
    """

    id = "ham10000"
    splits = ("train", "val", "test", ALL)
    fields = frozenset({"image", "label"})
    class_names = HAM_CLASSES
    split_mode = "derived"
    option_defaults = {"require_masks": False}
    image_dirs = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
    mask_dir = "HAM10000_segmentations_lesion_tschandl"

    def _metadata_file(self, folder: Path) -> Path | None:
        for name in ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata"):
            if (folder / name).is_file():
                return folder / name
        return None

    def looks_like(self, folder: Path) -> bool:
        return folder.is_dir() and self._metadata_file(folder) is not None

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        meta_path = self._metadata_file(self.folder)
        header, rows = _read_csv_rows(meta_path)
        absent = [c for c in ("lesion_id", "image_id", "dx") if c not in header]
        if absent:
            return [], [Problem(str(meta_path), f"missing column(s) {', '.join(absent)}; has {', '.join(header)}")]
        images: dict[str, Path] = {}
        found_dirs = [self.folder / d for d in self.image_dirs if (self.folder / d).is_dir()]
        if not found_dirs:
            problems.append(Problem(str(self.folder / self.image_dirs[0]), "missing folder (no HAM10000_images_part_* folder)"))
        for folder in found_dirs:
            images.update({p.stem: p for p in dio.list_images(folder) if is_isic_image(p)})
        mask_folder = self.folder / self.mask_dir
        masks = {p.stem.lower(): p for p in dio.list_images(mask_folder)} if mask_folder.is_dir() else {}
        records, listed = [], set()
        for line, row in enumerate(rows, start=2):
            sid = row["image_id"].strip()
            listed.add(sid)
            dx = row["dx"].strip().upper()
            if dx not in self.class_names:
                problems.append(Problem(str(meta_path), f"line {line} ({sid}): unknown dx '{row['dx']}'"))
                continue
            if sid not in images:
                problems.append(Problem(f"{self.folder}/HAM10000_images_part_*/{sid}.jpg", "missing image listed in the metadata"))
                continue
            mask = masks.pop(f"{sid}_segmentation".lower(), None)
            if mask_folder.is_dir() and mask is None:
                problems.append(Problem(str(images[sid]), f"missing mask {self.mask_dir}/{sid}_segmentation.png"))
            meta = {k: (row.get(k) or None) for k in ("lesion_id", "dx", "dx_type", "sex", "localization", "dataset")
                    if k in row}
            age = (row.get("age") or "").strip()
            meta["age"] = float(age) if age not in ("", "NA", "nan") else None
            meta["class_name"] = dx
            records.append(Record(sid, images[sid], (mask,) if mask else (), label=self.class_names.index(dx),
                                  group=row["lesion_id"].strip(), stratum=dx, meta=meta))
        for sid in sorted(set(images) - listed):
            problems.append(Problem(str(images[sid]), "unpaired image: not in the metadata CSV"))
        for mask in sorted(masks.values()):
            problems.append(Problem(str(mask), "unpaired mask: no image with this id"))
        return records, problems

    def load(self, split: str):
        if self.options["require_masks"]:
            missing = [sid for sid in self.split_ids(split) if not self.records[sid].masks]
            if missing:
                raise DataError(f"{self.folder / self.mask_dir}: {len(missing)} image(s) of split '{split}' have no "
                                f"mask, e.g. {missing[0]}_segmentation.png")
        return super().load(split)

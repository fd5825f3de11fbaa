"""Skin-tone datasets of thesis chapter 5 (research/ch5_lowcontrast.md section 1.3).

* ``fitzpatrick17k`` (Groh et al. 2021): clinical images with Fitzpatrick skin types I-VI,
  used to fine-tune the skin-tone classifiers (80 % / 20 % train / validation).
* ``ddi`` (Daneshjou et al. 2022): 656 clinical images balanced over FST I-II / III-IV / V-VI,
  test only.

Both use the three skin-tone groups of the thesis as class order: ``I-II``, ``III-IV``, ``V-VI``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from bench.data import io as dio
from bench.data.base import Problem
from bench.data.real import Record, RealDataset

logger = logging.getLogger(__name__)

SKIN_GROUPS = ("I-II", "III-IV", "V-VI")


def fst_group(fst: int) -> str:
    """Fitzpatrick type 1..6 -> the thesis's three groups."""
    return SKIN_GROUPS[(fst - 1) // 2]


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


class Fitzpatrick17k(RealDataset):
    """Fitzpatrick17k: image, FST group label; FST, condition and partition labels in meta.

    Images are not distributed: users fetch them from the CSV's URLs and save them as
    ``<md5hash>.jpg`` (any image extension) in ``images/`` (or ``finalfitz17k/``). Rows with
    FST -1 (unknown) are dropped (the thesis maps FST to three groups). Rows whose image is
    missing are reported by ``check`` and left out of the splits.

    Options:
        fst_column: ``fitzpatrick_scale`` (default; ``fitzpatrick`` in the first CSV release is
            used when this column is absent) or ``fitzpatrick_centaur``.
    """

    id = "fitzpatrick17k"
    splits = ("train", "val")
    fields = frozenset({"image", "label"})
    class_names = SKIN_GROUPS
    split_mode = "derived"
    option_defaults = {"fst_column": "fitzpatrick_scale"}
    image_dirs = ("images", "finalfitz17k", "data/finalfitz17k", "Fitzpatrick17k_images", ".")

    def looks_like(self, folder: Path) -> bool:
        return (folder / "fitzpatrick17k.csv").is_file()

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        path = self.folder / "fitzpatrick17k.csv"
        header, rows = _rows(path)
        column = self.options["fst_column"]
        if column not in header and column == "fitzpatrick_scale" and "fitzpatrick" in header:
            column = "fitzpatrick"
        absent = [c for c in ("md5hash", column) if c not in header]
        if absent:
            return [], [Problem(str(path), f"missing column(s) {', '.join(absent)}")]
        want_rows = self.card.get("csv_rows")
        if want_rows is not None and len(rows) != int(want_rows):
            problems.append(Problem(str(path), f"wrong count: {len(rows)} rows, card expects {want_rows}"))
        images: dict[str, Path] = {}
        for name in self.image_dirs[::-1]:
            folder = self.folder / name
            if folder.is_dir():
                images.update({p.stem: p for p in dio.list_images(folder)})
        records = []
        for line, row in enumerate(rows, start=2):
            try:
                fst = int(float(row[column]))
            except ValueError:
                problems.append(Problem(str(path), f"line {line}: {column} '{row[column]}' is not an integer"))
                continue
            if fst == -1:
                continue
            if not 1 <= fst <= 6:
                problems.append(Problem(str(path), f"line {line}: {column} {fst} outside 1..6"))
                continue
            image = images.get(row["md5hash"])
            if image is None:
                problems.append(Problem(str(self.folder / "images" / f"{row['md5hash']}.jpg"), "missing image listed in fitzpatrick17k.csv"))
                continue
            group = fst_group(fst)
            meta = {"fst": fst, **{k: row.get(k) for k in ("label", "nine_partition_label", "three_partition_label",
                                                           "qc", "url", "fitzpatrick_centaur") if k in row}}
            records.append(Record(row["md5hash"], image, label=SKIN_GROUPS.index(group), stratum=group, meta=meta))
        return records, problems


class DDI(RealDataset):
    """Diverse Dermatology Images: image, skin-tone group label; disease and malignancy in meta (test only)."""

    id = "ddi"
    splits = ("test",)
    fields = frozenset({"image", "label"})
    class_names = SKIN_GROUPS
    tone_to_group = {"12": "I-II", "34": "III-IV", "56": "V-VI"}

    def looks_like(self, folder: Path) -> bool:
        return (folder / "ddi_metadata.csv").is_file()

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        path = self.folder / "ddi_metadata.csv"
        header, rows = _rows(path)
        absent = [c for c in ("DDI_file", "skin_tone") if c not in header]
        if absent:
            return [], [Problem(str(path), f"missing column(s) {', '.join(absent)}")]
        images = {p.name: p for p in dio.list_images(self.folder)}
        if (self.folder / "images").is_dir():
            images.update({p.name: p for p in dio.list_images(self.folder / "images")})
        records, listed = [], set()
        for line, row in enumerate(rows, start=2):
            name = row["DDI_file"].strip()
            listed.add(name)
            group = self.tone_to_group.get(str(row["skin_tone"]).strip())
            if group is None:
                problems.append(Problem(str(path), f"line {line}: skin_tone '{row['skin_tone']}' not one of 12, 34, 56"))
                continue
            if name not in images:
                problems.append(Problem(str(self.folder / name), "missing image listed in ddi_metadata.csv"))
                continue
            malignant = str(row.get("malignant", "")).strip().lower() in ("true", "1")
            records.append(Record(Path(name).stem, images[name], label=SKIN_GROUPS.index(group), split="test",
                                  meta={"skin_tone": row["skin_tone"], "malignant": malignant,
                                        "disease": row.get("disease"), "DDI_ID": row.get("DDI_ID")}))
        for name in sorted(set(images) - listed):
            problems.append(Problem(str(images[name]), "unpaired image: not in ddi_metadata.csv"))
        return records, problems

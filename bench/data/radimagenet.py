"""RadImageNet (Mei et al. 2022): 1.35 M CT, MRI and ultrasound slices of 11 anatomical regions, 165 labels; the
pretraining set of DiffBoost (spec B.4), whose Table I reconstructs RadImageNet test images from their edge maps.

Layout (the release, obtained on request from radimagenet.com): ``radiology_ai/<CT|MR>/<organ>/<label>/*.png`` and
``radiology_ai/US/<label>/*.png``, with the official splits ``RadiologyAI_train.csv``, ``RadiologyAI_val.csv`` and
``RadiologyAI_test.csv`` (column ``filename``: the image path from the folder holding ``radiology_ai/``). The sample
id is that path; ``Sample.prompt`` is the folder path after ``radiology_ai/`` comma-joined with the abbreviations
expanded (DiffBoost's ``reorganize_data.py``: "CT, abdomen, Arterial_pathology").
"""
from __future__ import annotations

import csv
from pathlib import Path

from bench.data.base import Problem
from bench.data.real import Record, RealDataset

#: DiffBoost's folder-name abbreviations (``reorganize_data.py``)
ABBREVIATIONS = {"abd": "abdomen", "af": "ankle", "cbd": "common bile duct", "gb": "gallbladder",
                 "ivc": "inferior vena cava"}
SPLIT_FILES = {"train": "RadiologyAI_train.csv", "val": "RadiologyAI_val.csv", "test": "RadiologyAI_test.csv"}
IMAGE_ROOT = "radiology_ai"


def folder_prompt(parts: tuple[str, ...] | list[str]) -> str:
    """The prompt of an image from its folder names (modality, organ, label): comma-joined, abbreviations
    expanded."""
    return ", ".join(ABBREVIATIONS.get(p.lower(), p) for p in parts)


class RadImageNet(RealDataset):
    """RadImageNet: grey images (decoded as RGB), the folder-path prompt, no masks; official splits from the CSVs."""

    id = "radimagenet"
    splits = ("train", "val", "test")
    fields = frozenset({"image", "prompt"})
    split_mode = "official"

    def looks_like(self, folder: Path) -> bool:
        return (folder / IMAGE_ROOT).is_dir() and any((folder / f).is_file() for f in SPLIT_FILES.values())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        records = []
        for split, name in SPLIT_FILES.items():
            path = self.folder / name
            if not path.is_file():
                problems.append(Problem(str(path), f"missing official {split} split file"))
                continue
            with path.open(newline="", encoding="utf-8") as handle:
                rows = csv.DictReader(handle)
                if "filename" not in (rows.fieldnames or []):
                    problems.append(Problem(str(path), f"no 'filename' column (columns: {rows.fieldnames})"))
                    continue
                for row in rows:
                    rel = row["filename"].strip().lstrip("/")
                    parts = Path(rel).parts
                    folders = parts[1:-1] if parts and parts[0] == IMAGE_ROOT else parts[:-1]
                    records.append(Record(rel, self.folder / rel, prompt=folder_prompt(folders), split=split,
                                          meta={"modality": folders[0] if folders else ""}))
        return records, problems

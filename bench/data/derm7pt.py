"""Derm7pt (Kawahara et al. 2018): dermoscopic images with diagnoses, mapped to the HAM classes.

Layout: ``release_v0/meta/meta.csv``, ``release_v0/meta/{train,valid,test}_indexes.csv`` and
``release_v0/images/<subdir>/<file>.jpg``. Diagnoses are mapped to the seven HAM10000
classes by `DIAGNOSIS_TO_HAM` (research/ch4_didgen.md section 7.4; the thesis gives no
mapping); melanosis and miscellaneous have no HAM class and are dropped, leaving the
thesis's 987 cases (split ``all``, the thesis's external test set). train/val/test are the
official index files, restricted to the retained cases.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from bench.data.base import Problem
from bench.data.isic import HAM_CLASSES
from bench.data.real import ALL, Record, RealDataset

logger = logging.getLogger(__name__)

DIAGNOSIS_TO_HAM = {
    "basal cell carcinoma": "BCC", "blue nevus": "NV", "clark nevus": "NV", "combined nevus": "NV",
    "congenital nevus": "NV", "dermal nevus": "NV", "recurrent nevus": "NV", "reed or spitz nevus": "NV",
    "dermatofibroma": "DF", "lentigo": "BKL", "seborrheic keratosis": "BKL", "vascular lesion": "VASC",
    "melanoma": "MEL", "melanoma (in situ)": "MEL", "melanoma (less than 0.76 mm)": "MEL",
    "melanoma (0.76 to 1.5 mm)": "MEL", "melanoma (more than 1.5 mm)": "MEL", "melanoma metastasis": "MEL",
}
#: Diagnoses without a HAM class (dropped).
DROPPED = ("melanosis", "miscellaneous")
SEVEN_POINT = ("pigment_network", "streaks", "pigmentation", "regression_structures", "dots_and_globules",
               "blue_whitish_veil", "vascular_structures")
INDEX_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}


class Derm7pt(RealDataset):
    """Derm7pt cases as HAM-class-labelled dermoscopic (or clinical) images.

    Options:
        image: ``derm`` (dermoscopic, default, as the thesis) or ``clinic`` (clinical photo).
    """

    id = "derm7pt"
    splits = ("train", "val", "test", ALL)
    fields = frozenset({"image", "label"})
    class_names = HAM_CLASSES
    option_defaults = {"image": "derm"}

    def looks_like(self, folder: Path) -> bool:
        return (folder / "meta" / "meta.csv").is_file()

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        column = self.options["image"]
        if column not in ("derm", "clinic"):
            return [], [Problem(str(self.folder), f"option image must be 'derm' or 'clinic', got {column!r}")]
        meta_path = self.folder / "meta" / "meta.csv"
        with meta_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
        absent = [c for c in ("case_num", "diagnosis", column) if c not in header]
        if absent:
            return [], [Problem(str(meta_path), f"missing column(s) {', '.join(absent)}")]
        split_of = self._official_splits(len(rows), problems)
        records = []
        for index, row in enumerate(rows):
            diagnosis = row["diagnosis"].strip()
            if diagnosis in DROPPED:
                continue
            ham = DIAGNOSIS_TO_HAM.get(diagnosis)
            if ham is None:
                problems.append(Problem(str(meta_path), f"line {index + 2}: unknown diagnosis '{diagnosis}'"))
                continue
            image = self.folder / "images" / row[column]
            if not image.is_file():
                problems.append(Problem(str(image), f"missing image of case {row['case_num']}"))
                continue
            meta = {"diagnosis": diagnosis, "class_name": ham, "row": index,
                    **{k: row[k] for k in (*SEVEN_POINT, "seven_point_score", "location", "sex", "elevation",
                                           "management", "level_of_diagnostic_difficulty", "derm", "clinic") if k in row}}
            records.append(Record(row["case_num"].strip(), image, label=HAM_CLASSES.index(ham),
                                  split=split_of.get(index), meta=meta))
        return records, problems

    def _official_splits(self, n_rows: int, problems: list[Problem]) -> dict[int, str]:
        split_of: dict[int, str] = {}
        for split, name in INDEX_FILES.items():
            path = self.folder / "meta" / name
            if not path.is_file():
                problems.append(Problem(str(path), "missing split index file"))
                continue
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    value = int(float(row["indexes"]))
                    if not 0 <= value < n_rows:
                        problems.append(Problem(str(path), f"index {value} outside meta.csv's {n_rows} rows"))
                        continue
                    split_of[value] = split
        return split_of

"""PH2 dermoscopy database (Mendonça et al. 2013): 200 images, lesion masks, diagnoses.

Two layouts are read (the card lists both):

* the official release: ``PH2Dataset/PH2 Dataset images/IMDnnn/IMDnnn_Dermoscopic_Image/IMDnnn.bmp``,
  ``.../IMDnnn_lesion/IMDnnn_lesion.bmp`` and the ``||``-separated ``PH2Dataset/PH2_dataset.txt``;
* a flat copy: ``ph2/images/IMDnnn.png``, ``ph2/masks/IMDnnn_lesion.png`` and
  ``ph2/ph2_labels.csv`` (one row per image, criteria as words), as in the project's shared data.

The standard split (120 train / 20 val / 60 test, stratified by clinical diagnosis) is the
committed file ``datasets/splits/ph2.csv``; the thesis uses all 200 as a test set (split ``all``).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from bench.data import io as dio
from bench.data.base import Problem
from bench.data.real import ALL, Record, RealDataset, pair_by_stem

logger = logging.getLogger(__name__)

CLASS_NAMES = ("common_nevus", "atypical_nevus", "melanoma")
#: PH2_dataset.txt colour codes (1-6) and criteria column order.
COLOURS = {"1": "White", "2": "Red", "3": "Light-Brown", "4": "Dark-Brown", "5": "Blue-Gray", "6": "Black"}
CRITERIA = ("asymmetry", "pigment_network", "dots_globules", "streaks", "regression_areas", "blue_whitish_veil")
OFFICIAL_IMAGES = "PH2 Dataset images"


def parse_ph2_txt(path: Path) -> tuple[dict[str, dict[str, object]], list[Problem]]:
    """Rows of the official ``PH2_dataset.txt`` (``|| Name || Hist || Clin || A | PN | DG | S | RA | BWV || Colours ||``).

    Returns:
        image id -> {clinical_diagnosis, histological_diagnosis, criteria..., colors}, and problems.
    """
    rows: dict[str, dict[str, object]] = {}
    problems: list[Problem] = []
    text = path.read_bytes().decode("latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        parts = [p.strip() for p in line.split("||")]
        if len(parts) < 6 or not parts[1].startswith("IMD"):
            continue
        name, histology, clinical, criteria, colours = parts[1:6]
        values = [v.strip() for v in criteria.split("|")]
        if clinical not in ("0", "1", "2") or len(values) != len(CRITERIA):
            problems.append(Problem(str(path), f"line {number} ({name}): cannot parse diagnosis/criteria"))
            continue
        row: dict[str, object] = {"clinical_diagnosis": CLASS_NAMES[int(clinical)], "histological_diagnosis": histology}
        row.update(zip(CRITERIA, values))
        row["colors"] = [COLOURS.get(c, c) for c in colours.split()]
        rows[name] = row
    return rows, problems


def read_ph2_labels_csv(path: Path) -> tuple[dict[str, dict[str, object]], list[Problem]]:
    """Rows of the flat copy's ``ph2_labels.csv`` (criteria as words, colours ``;``-separated)."""
    rows: dict[str, dict[str, object]] = {}
    problems: list[Problem] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if row.get("clinical_diagnosis") not in CLASS_NAMES:
                problems.append(Problem(str(path), f"line {number}: unknown clinical_diagnosis "
                                                   f"'{row.get('clinical_diagnosis')}'"))
                continue
            entry: dict[str, object] = {k: row.get(k, "") for k in ("clinical_diagnosis", "histological_diagnosis", *CRITERIA)}
            entry["colors"] = [c for c in (row.get("colors") or "").split(";") if c]
            rows[row["image_id"]] = entry
    return rows, problems


class PH2(RealDataset):
    """PH2: image, binary lesion mask, clinical diagnosis label (card class order) and criteria in meta."""

    id = "ph2"
    splits = ("train", "val", "test", ALL)
    fields = frozenset({"image", "mask", "label"})
    class_names = CLASS_NAMES
    split_mode = "committed"

    def looks_like(self, folder: Path) -> bool:
        return (folder / OFFICIAL_IMAGES).is_dir() or ((folder / "images").is_dir() and (folder / "ph2_labels.csv").is_file())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        if (self.folder / OFFICIAL_IMAGES).is_dir():
            pairs, problems = self._scan_official()
            label_file = self.folder / "PH2_dataset.txt"
            reader = parse_ph2_txt
        else:
            problems = []
            pairs = pair_by_stem(self.folder / "images", self.folder / "masks", lambda s: f"{s}_lesion.png", problems)
            label_file = self.folder / "ph2_labels.csv"
            reader = read_ph2_labels_csv
        if not label_file.is_file():
            return [], problems + [Problem(str(label_file), "missing label file")]
        labels, label_problems = reader(label_file)
        problems += label_problems
        records = []
        for stem, image, mask in pairs:
            if stem not in labels:
                problems.append(Problem(str(image), f"no row for {stem} in {label_file.name}"))
                continue
            row = labels[stem]
            records.append(Record(stem, image, (mask,) if mask else (), label=CLASS_NAMES.index(str(row["clinical_diagnosis"])),
                                  stratum=str(row["clinical_diagnosis"]), meta=dict(row)))
        for stem in sorted(set(labels) - {p[0] for p in pairs}):
            problems.append(Problem(str(label_file), f"{stem} has a label row but no image"))
        return records, problems

    def _scan_official(self) -> tuple[list[tuple[str, Path, Path | None]], list[Problem]]:
        problems: list[Problem] = []
        pairs = []
        for case in sorted(p for p in (self.folder / OFFICIAL_IMAGES).iterdir() if p.is_dir()):
            name = case.name
            images = sorted((case / f"{name}_Dermoscopic_Image").glob(f"{name}.*"))
            masks = sorted((case / f"{name}_lesion").glob(f"{name}_lesion.*"))
            images = [p for p in images if dio.is_image_file(p)]
            masks = [p for p in masks if dio.is_image_file(p)]
            if not images:
                problems.append(Problem(str(case / f"{name}_Dermoscopic_Image"), f"missing image {name}.bmp"))
                if masks:
                    problems.append(Problem(str(masks[0]), "unpaired mask: no image with this id"))
                continue
            if not masks:
                problems.append(Problem(str(images[0]), f"missing mask {name}_lesion/{name}_lesion.bmp"))
            pairs.append((name, images[0], masks[0] if masks else None))
        return pairs, problems

"""Chest X-ray datasets (research/ch6_cxr.md section 4).

* ``mimic-cxr``: MIMIC-CXR-JPG 2.0.0 images with the official split, metadata and CheXpert
  CSVs, and report text from MIMIC-CXR 2.0.0 (findings / impression sections).
* ``iu-xray``: the 3955 IU X-ray (Open-i) reports that torchxrayvision ships, with their MeSH
  tags, plus the frontal image from a user folder in the Open-i naming when one is given.
* ``covid-cxr``: the COVID-19 image data collection (Cohen et al. 2020), ``metadata.csv`` layout.
"""
from __future__ import annotations

import csv
import logging
import re
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from bench.data import io as dio
from bench.data.base import DataError, Problem
from bench.data.real import ALL, Record, RealDataset

logger = logging.getLogger(__name__)

#: The 14 CheXpert observations, in the column order of mimic-cxr-2.0.0-chexpert.csv (alphabetical).
CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                   "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                   "Pneumothorax", "Support Devices")
FRONTAL_VIEWS = ("PA", "AP")
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/]+?)[ \t]*:", re.MULTILINE)


def section_report(text: str) -> dict[str, str]:
    """Split a free-text radiology report into sections by its upper-case ``TITLE:`` headers.

    The last section of each title wins (as the MIMIC-CXR sectioning script does);
    ``FINDINGS AND IMPRESSION`` counts as both. Text before the first header is ``preamble``.

    Returns:
        lower-case title -> whitespace-normalised text (``findings``, ``impression``, ``indication`` ...).
    """
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    starts = [m.start() for m in matches] + [len(text)]
    if matches:
        sections["preamble"] = " ".join(text[:matches[0].start()].split())
    for match, end in zip(matches, starts[1:]):
        title = " ".join(match.group(1).lower().split())
        body = " ".join(text[match.end():end].split())
        sections[title] = body
        if title in ("findings and impression", "impression and findings"):
            sections["findings"] = sections["impression"] = body
    return sections


# ----------------------------------------------------------------------------- MIMIC-CXR-JPG
class MimicCxr(RealDataset):
    """MIMIC-CXR-JPG 2.0.0 images with CheXpert labels and report sections (credentialed; never downloaded).

    ``labels`` is the 14-observation multi-hot vector (1 = positive; uncertain per option
    ``uncertain``); the raw CheXpert values (1, 0, -1, None for blank) are in ``meta["chexpert"]``,
    so the thesis's "with / without / unclear about" prompt can be built. ``report`` is
    findings then impression; both are also in meta.

    Options:
        views: ViewPosition values kept (default ``["PA"]``, the thesis's vision data; ``["PA", "AP"]`` for reports).
        uncertain: ``zero`` (default) or ``one``: how -1 enters ``labels``.
        require_report: drop images whose study has no report text (default False).
        split_rule: ``official`` (default; thesis: the official train / validate / test split) or ``code`` (the
            CXR-IRGen code's pools, ch6 spec section 4.3: folders p10-p18 keep their official train / validate rows,
            every row of folder p19 is test, official test rows of p10-p18 are left out).
    """

    id = "mimic-cxr"
    fields = frozenset({"image", "labels", "report"})
    class_names = CHEXPERT_LABELS
    channels = 1
    option_defaults = {"views": ("PA",), "uncertain": "zero", "require_report": False, "split_rule": "official"}
    jpg_dirs = ("mimic-cxr-jpg/2.0.0", "physionet.org/files/mimic-cxr-jpg/2.0.0", "mimic-cxr-jpg", ".")
    report_dirs = ("mimic-cxr/2.0.0", "physionet.org/files/mimic-cxr/2.0.0", "mimic-cxr")
    split_names = {"train": "train", "validate": "val", "test": "test"}

    def folder_names(self) -> list[str]:
        return list(self.jpg_dirs)

    def looks_like(self, folder: Path) -> bool:
        return (folder / "mimic-cxr-2.0.0-split.csv.gz").is_file() or (folder / "mimic-cxr-2.0.0-split.csv").is_file()

    def _table(self, stem: str, problems: list[Problem]):
        import pandas as pd

        for name in (f"{stem}.csv.gz", f"{stem}.csv"):
            if (self.folder / name).is_file():
                return pd.read_csv(self.folder / name, dtype={"dicom_id": str, "subject_id": str, "study_id": str})
        problems.append(Problem(str(self.folder / f"{stem}.csv.gz"), "missing file"))
        return None

    def scan(self) -> tuple[list[Record], list[Problem]]:
        if self.options["uncertain"] not in ("zero", "one"):
            raise DataError(f"dataset 'mimic-cxr': option uncertain must be 'zero' or 'one', got {self.options['uncertain']!r}")
        if self.options["split_rule"] not in ("official", "code"):
            raise DataError(f"dataset 'mimic-cxr': option split_rule must be 'official' or 'code', "
                            f"got {self.options['split_rule']!r}")
        problems: list[Problem] = []
        split = self._table("mimic-cxr-2.0.0-split", problems)
        metadata = self._table("mimic-cxr-2.0.0-metadata", problems)
        chexpert = self._table("mimic-cxr-2.0.0-chexpert", problems)
        if split is None or metadata is None or chexpert is None:
            return [], problems
        for name, table, columns in (("split", split, ("dicom_id", "study_id", "subject_id", "split")),
                                     ("metadata", metadata, ("dicom_id", "ViewPosition")),
                                     ("chexpert", chexpert, ("study_id", *CHEXPERT_LABELS))):
            absent = [c for c in columns if c not in table.columns]
            if absent:
                problems.append(Problem(str(self.folder / f"mimic-cxr-2.0.0-{name}.csv.gz"), f"missing column(s) {', '.join(absent)}"))
                return [], problems
        rows_expected = self.card.get("rows_per_split") or {}
        for official, count in split["split"].value_counts().items():
            want = rows_expected.get(official)
            if want is not None and int(count) != int(want):
                problems.append(Problem(str(self.folder / "mimic-cxr-2.0.0-split.csv.gz"),
                                        f"wrong count: {count} rows of split '{official}', card expects {want}"))
        table = split.merge(metadata[["dicom_id", "ViewPosition"]], on="dicom_id", how="left")
        table = table[table["ViewPosition"].isin(list(self.options["views"]))]
        labels = chexpert.set_index("study_id")[list(CHEXPERT_LABELS)]
        reports = self._reports()
        records = []
        for row in table.itertuples(index=False):
            subject, study, dicom = str(row.subject_id), str(row.study_id), str(row.dicom_id)
            split_name = self.split_names.get(row.split)
            if self.options["split_rule"] == "code":
                split_name = "test" if subject[:2] == "19" else (None if split_name == "test" else split_name)
                if split_name is None:
                    continue
            image = self.folder / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
            raw = [None] * len(CHEXPERT_LABELS)
            if study in labels.index:
                values = labels.loc[study]
                values = values.iloc[0] if values.ndim > 1 else values
                raw = [None if v != v else float(v) for v in values.tolist()]
            positive = 1.0 if self.options["uncertain"] == "one" else 0.0
            hot = tuple(1.0 if v == 1.0 else positive if v == -1.0 else 0.0 for v in raw)
            sections = reports(subject, study)
            text = " ".join(t for t in (sections.get("findings", ""), sections.get("impression", "")) if t) or None
            if self.options["require_report"] and text is None:
                continue
            records.append(Record(dicom, image, labels=hot, report=text, split=split_name,
                                  group=subject, meta={"subject_id": subject, "study_id": study,
                                                       "view": row.ViewPosition, "chexpert": raw,
                                                       "findings": sections.get("findings"),
                                                       "impression": sections.get("impression")}))
        for rec in records:
            if not rec.image.is_file():
                problems.append(Problem(str(rec.image), "missing image listed in the split CSV"))
        present = [rec for rec in records if rec.image.is_file()]
        return present, problems

    def _reports(self):
        """``(subject, study) -> sections``: from mimic_cxr_sectioned.csv if present, else from the .txt reports."""
        base = next((self.root / d for d in self.report_dirs if (self.root / d).is_dir()), None) if self.root else None
        sectioned = next((p for p in ((base / "mimic_cxr_sectioned.csv") if base else None,
                                      self.folder / "mimic_cxr_sectioned.csv") if p is not None and p.is_file()), None)
        if sectioned is not None:
            table: dict[str, dict[str, str]] = {}
            with sectioned.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    table[row["study"].lstrip("s")] = {k: (row.get(k) or "").strip() for k in ("findings", "impression")}
            return lambda subject, study: table.get(study, {})
        if base is None:
            logger.warning("mimic-cxr: no report folder (%s) under %s; reports are empty", " or ".join(self.report_dirs), self.root)
            return lambda subject, study: {}

        def from_txt(subject: str, study: str) -> dict[str, str]:
            path = base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            return section_report(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else {}

        return from_txt


# ----------------------------------------------------------------------------- IU X-ray
def iu_reports_archive() -> Path:
    """The ``NLMCXR_reports.tgz`` that the torchxrayvision wheel ships (3955 IU X-ray XML reports)."""
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or spec.origin is None:
        raise DataError("iu-xray: the reports come from torchxrayvision's wheel: pip install torchxrayvision")
    path = Path(spec.origin).parent / "data" / "NLMCXR_reports.tgz"
    if not path.is_file():
        raise DataError(f"{path}: missing IU X-ray reports archive (reinstall torchxrayvision)")
    return path


@lru_cache(maxsize=2)
def read_iu_reports(archive: Path) -> tuple[dict[str, Any], ...]:
    """Parse every ``ecgen-radiology/*.xml`` of the archive.

    Returns:
        per report: ``uid`` (``CXR1``), ``sections`` (label -> text: COMPARISON, INDICATION,
        FINDINGS, IMPRESSION), ``mesh_major`` and ``mesh_automatic`` (lists of MeSH strings, as
        written, e.g. ``Opacity/lung/base/left/mild``) and ``images`` (parentImage ids in file order).
    """
    reports = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".xml"):
                continue
            root = ElementTree.fromstring(tar.extractfile(member).read())  # type: ignore[union-attr]
            uid = root.find("uId")
            reports.append({
                "uid": uid.get("id") if uid is not None else Path(member.name).stem,
                "sections": {el.get("Label"): " ".join((el.text or "").split()) for el in root.iter("AbstractText")},
                "mesh_major": [(el.text or "").strip() for el in root.iter("major")],
                "mesh_automatic": [(el.text or "").strip() for el in root.iter("automatic")],
                "images": [el.get("id") for el in root.iter("parentImage")],
            })
    return tuple(sorted(reports, key=lambda r: int(r["uid"][3:]) if r["uid"][3:].isdigit() else 10**9))


@lru_cache(maxsize=1)
def iu_view_positions() -> dict[str, str]:
    """Open-i image id (``CXR1_1_IM-0001-3001``) -> DICOM View Position, from torchxrayvision's metadata."""
    import pandas as pd

    path = iu_reports_archive().parent / "nlmcxr_dicom_metadata.csv.gz"
    if not path.is_file():
        return {}
    table = pd.read_csv(path, usecols=["imageid", "View Position"], dtype=str)
    # The metadata names images CXR1000_IM-0003-2001; the XML adds the figure number: CXR1000_1_IM-0003-2001.
    return {image: view for image, view in zip(table["imageid"], table["View Position"]) if isinstance(view, str)}


def _metadata_image_key(openi_id: str) -> str:
    return re.sub(r"^(CXR\d+)_\d+_", r"\1_", openi_id)


class IuXray(RealDataset):
    """IU X-ray reports (torchxrayvision wheel) and, with ``--data-root``, frontal images.

    One sample per report with FINDINGS or IMPRESSION text (3927 of 3955): ``report`` is
    findings then impression; meta has both sections, the MeSH tags and the study's image ids.
    With a data root holding ``iu_xray/images/`` (or ``NLMCXR_png/``) in the Open-i naming
    (``CXR1_1_IM-0001-3001.png``), the study's first frontal (PA, else AP) image is loaded;
    views come from torchxrayvision's ``nlmcxr_dicom_metadata.csv.gz``. The split is the
    committed ``datasets/splits/iu-xray.csv`` (study level, 70/10/20, seed in the card).

    Options:
        require_image: with a data root, drop studies without a frontal image file (default True).
    """

    id = "iu-xray"
    fields = frozenset({"report"})
    needs_root = False
    split_mode = "committed"
    channels = 1
    option_defaults = {"require_image": True}
    image_dirs = ("iu_xray/images", "iu-xray/images", "NLMCXR_png", "iu_xray", "images")

    @property
    def folder(self) -> Path | None:  # type: ignore[override]
        if self.root is None:
            return None
        for name in self.image_dirs:
            if (self.root / name).is_dir() and any((self.root / name).glob("CXR*.png")):
                return self.root / name
        if any(self.root.glob("CXR*.png")):
            return self.root
        raise DataError(f"{self.root}: missing folder {' or '.join(d + '/' for d in self.image_dirs)} with Open-i "
                        f"images named like CXR1_1_IM-0001-3001.png (or omit --data-root for reports only)")

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        folder = self.folder
        views = iu_view_positions()
        records = []
        for report in read_iu_reports(iu_reports_archive()):
            findings = report["sections"].get("FINDINGS", "")
            impression = report["sections"].get("IMPRESSION", "")
            if not (findings or impression):
                continue
            meta = {"findings": findings, "impression": impression, "indication": report["sections"].get("INDICATION", ""),
                    "mesh_major": report["mesh_major"], "mesh_automatic": report["mesh_automatic"],
                    "image_ids": report["images"],
                    "views": [views.get(_metadata_image_key(i)) for i in report["images"]]}
            image = None
            if folder is not None:
                image = self._frontal_image(folder, report["images"], meta["views"])
                if image is None and self.options["require_image"]:
                    continue
                meta["image_id"] = image.stem if image is not None else None
            records.append(Record(report["uid"], image, report=" ".join(t for t in (findings, impression) if t), meta=meta))
        return records, problems

    @staticmethod
    def _frontal_image(folder: Path, image_ids: list[str], views: list[str | None]) -> Path | None:
        for wanted in FRONTAL_VIEWS:
            for image_id, view in zip(image_ids, views):
                path = folder / f"{image_id}.png"
                if view == wanted and path.is_file():
                    return path
        return None

    def split_ids(self, split: str) -> list[str]:
        return super().split_ids(split) if self.root is None else self._present(split)

    def _count_problems(self, records: list[Record], assignment: dict[str, str]) -> list[Problem]:
        # With images, the counts depend on which studies have a frontal image file: only reports are counted.
        return super()._count_problems(records, assignment) if self.root is None else []

    def _present(self, split: str) -> list[str]:
        # With images, studies without a frontal image file are dropped, so the split is the committed one minus those.
        self._check_split(split)
        records = self.records
        return sorted(sid for sid, s in self._assignment.items() if s == split and sid in records)


# ----------------------------------------------------------------------------- COVID-19 image data collection
COVID_FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP semi erect", "AP erect")


class CovidCxr(RealDataset):
    """COVID-19 image data collection (Cohen et al. 2020): frontal X-rays, finding labels, clinical notes.

    Reads ``metadata.csv`` (upstream) or ``metadata_subset.csv`` (a filtered copy with the same
    columns) and ``images/<filename>``; an image re-encoded to PNG under the same stem is accepted.
    Rows are kept when ``modality`` is ``X-ray``, ``view`` is frontal and ``folder`` is ``images``.
    ``label`` is 1 when the ``finding`` names COVID-19 (both the flat "COVID-19, ARDS" and the
    later hierarchical "Pneumonia/Viral/COVID-19" conventions), else 0; ``report`` is
    ``clinical_notes``. No official split: train/val/test are derived by ``patientid`` with the
    card's seed; ``all`` is every kept image.

    Options:
        views: kept ``view`` values (default: PA, AP, AP Supine, AP semi erect, AP erect).
    """

    id = "covid-cxr"
    splits = ("train", "val", "test", ALL)
    fields = frozenset({"image", "label", "report"})
    class_names = ("other", "COVID-19")
    split_mode = "derived"
    channels = 1
    option_defaults = {"views": COVID_FRONTAL_VIEWS}

    @staticmethod
    def _metadata_file(folder: Path) -> Path | None:
        for name in ("metadata.csv", "metadata_subset.csv"):
            if (folder / name).is_file():
                return folder / name
        return None

    def looks_like(self, folder: Path) -> bool:
        return (folder / "images").is_dir() and self._metadata_file(folder) is not None

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        meta_path = self._metadata_file(self.folder)
        with meta_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
        absent = [c for c in ("patientid", "finding", "view", "modality", "filename") if c not in header]
        if absent:
            return [], [Problem(str(meta_path), f"missing column(s) {', '.join(absent)}")]
        images = {p.name: p for p in dio.list_images(self.folder / "images")}
        by_stem = {p.stem: p for p in images.values()}
        records, used = [], set()
        for line, row in enumerate(rows, start=2):
            if row["modality"] != "X-ray" or row["view"] not in self.options["views"]:
                continue
            if row.get("folder", "images") not in ("images", ""):
                continue
            filename = row["filename"]
            stem = Path(filename).stem
            image = images.get(filename) or by_stem.get(stem)
            if image is None:
                problems.append(Problem(str(self.folder / "images" / filename), f"missing image of {meta_path.name} line {line}"))
                continue
            used.add(image.name)
            finding = row["finding"]
            label = int("covid-19" in finding.lower())
            notes = (row.get("clinical_notes") or "").strip() or None
            meta = {k: row.get(k) for k in ("patientid", "offset", "sex", "age", "finding", "view", "date", "location",
                                            "doi", "url", "license", "filename") if k in row}
            records.append(Record(stem, image, label=label, report=notes, group=row["patientid"],
                                  stratum=self.class_names[label], meta=meta))
        return records, problems

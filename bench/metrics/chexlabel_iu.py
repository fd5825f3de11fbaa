"""IU X-ray (Open-i) reports shipped with torchxrayvision, with MeSH tags mapped to CheXpert observations.

Used to measure the agreement of the rule-based labeler (`bench.metrics.chexlabel`)
with independent human indexing: ``benchmarks/chexlabel_agreement.py``.

The 3,955 reports live in ``torchxrayvision/data/NLMCXR_reports.tgz`` inside the
installed package (one XML per report; FINDINGS and IMPRESSION sections; ``<major>``
MeSH tags such as ``Opacity/lung/base/left``). Only the *major* tags are used (the
``<automatic>`` ones were extracted from the text and would make the comparison
circular). A MeSH tag marks a positive finding; tags never state negatives, so the
agreement is reported as precision/recall of the labeler's positives.

MeSH -> CheXpert mapping (descriptor = text before the first "/"; qualifiers after):

| CheXpert | MeSH major descriptor(s) |
|---|---|
| No Finding | ``normal`` |
| Enlarged Cardiomediastinum | ``Mediastinum`` with qualifier enlarged / prominent / widened |
| Cardiomegaly | ``Cardiomegaly``; ``Cardiac Shadow`` with qualifier enlarged |
| Lung Lesion | ``Nodule``, ``Mass``, ``Cavitation``, ``Lung Neoplasms``, ``Neoplasm Metastasis`` |
| Lung Opacity | ``Opacity``, ``Airspace Disease``, ``Infiltrate`` |
| Edema | ``Pulmonary Edema``, ``Pulmonary Congestion`` |
| Consolidation | ``Consolidation`` |
| Pneumonia | ``Pneumonia`` |
| Atelectasis | ``Pulmonary Atelectasis`` |
| Pneumothorax | ``Pneumothorax``, ``Hydropneumothorax`` |
| Pleural Effusion | ``Pleural Effusion``, ``Hydropneumothorax`` |
| Pleural Other | ``Thickening`` with qualifier pleura; ``Pleural Thickening`` |
| Fracture | ``Fractures, Bone`` |
| Support Devices | ``Catheters, Indwelling``, ``Tube, Inserted``, ``Implanted Medical Device``, ``Medical Device``, ``Stents``, ``Pacemaker, Artificial``, ``Heart Valve Prosthesis`` |

Not mapped (no CheXpert observation): granulomas, calcinosis, scarring (Cicatrix),
spine and bone degeneration, emphysema, hyperinflation, hernia, surgical clips
(``Surgical Instruments``), technical quality.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.metrics.chexlabel import CATEGORIES

logger = logging.getLogger(__name__)

MESH_TO_CHEXPERT: dict[str, tuple[str, ...]] = {
    "normal": ("No Finding",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Nodule": ("Lung Lesion",),
    "Mass": ("Lung Lesion",),
    "Cavitation": ("Lung Lesion",),
    "Lung Neoplasms": ("Lung Lesion",),
    "Neoplasm Metastasis": ("Lung Lesion",),
    "Opacity": ("Lung Opacity",),
    "Airspace Disease": ("Lung Opacity",),
    "Infiltrate": ("Lung Opacity",),
    "Pulmonary Edema": ("Edema",),
    "Pulmonary Congestion": ("Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Pulmonary Atelectasis": ("Atelectasis",),
    "Pneumothorax": ("Pneumothorax",),
    "Hydropneumothorax": ("Pneumothorax", "Pleural Effusion"),
    "Pleural Effusion": ("Pleural Effusion",),
    "Pleural Thickening": ("Pleural Other",),
    "Fractures, Bone": ("Fracture",),
    "Catheters, Indwelling": ("Support Devices",),
    "Tube, Inserted": ("Support Devices",),
    "Implanted Medical Device": ("Support Devices",),
    "Medical Device": ("Support Devices",),
    "Stents": ("Support Devices",),
    "Pacemaker, Artificial": ("Support Devices",),
    "Heart Valve Prosthesis": ("Support Devices",),
}
QUALIFIED: dict[str, tuple[set[str], str]] = {
    "Mediastinum": ({"enlarged", "prominent", "widened", "wide"}, "Enlarged Cardiomediastinum"),
    "Cardiac Shadow": ({"enlarged"}, "Cardiomegaly"),
    "Thickening": ({"pleura"}, "Pleural Other"),
}


def mesh_to_labels(major_tags: list[str]) -> np.ndarray:
    """Binary (14,) CheXpert vector from a report's MeSH major tags (see the module table)."""
    out = np.zeros(len(CATEGORIES), dtype=np.int64)
    for tag in major_tags:
        parts = [p.strip() for p in tag.split("/")]
        head, qualifiers = parts[0], {p.lower() for p in parts[1:]}
        for cat in MESH_TO_CHEXPERT.get(head, ()):
            out[CATEGORIES.index(cat)] = 1
        if head in QUALIFIED and qualifiers & QUALIFIED[head][0]:
            out[CATEGORIES.index(QUALIFIED[head][1])] = 1
    return out


@dataclass
class IUReport:
    """One IU X-ray report."""

    uid: str
    findings: str
    impression: str
    major_mesh: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """FINDINGS then IMPRESSION, as one text."""
        return " ".join(t for t in (self.findings, self.impression) if t)


def load_iu_reports(archive: str | Path | None = None) -> list[IUReport]:
    """Every IU X-ray report (3,955 in torchxrayvision 1.5) with its major MeSH tags, sorted by id.

    Parsing is `bench.data.cxr.read_iu_reports` (one parser for the archive); ``archive`` defaults
    to the copy inside the installed torchxrayvision package.
    """
    from bench.data.cxr import iu_reports_archive, read_iu_reports

    parsed = read_iu_reports(Path(archive) if archive is not None else iu_reports_archive())
    reports = [IUReport(r["uid"], r["sections"].get("FINDINGS") or "", r["sections"].get("IMPRESSION") or "",
                        [m for m in r["mesh_major"] if m]) for r in parsed]
    return sorted(reports, key=lambda r: r.uid)

"""label-template: a report written from the label vector alone, one fixed sentence per positive finding.

A floor for chapter 6's report tables (issue 20): it never looks at an image, so its CE F1 shows how much of that
score needs no image understanding (given the label vector, F1 is bounded only by how the labeler reads the
template back). Positive findings get a sentence each (`POSITIVE_SENTENCES`); with ``negatives`` the usual negative
statements follow for the common findings that are not positive; an all-negative vector (or No Finding) gives
the normal template. Deterministic; nothing is fitted.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample

POSITIVE_SENTENCES: dict[str, str] = {
    "Enlarged Cardiomediastinum": "The cardiomediastinal silhouette is enlarged.",
    "Cardiomegaly": "The heart is enlarged.",
    "Lung Lesion": "There is a pulmonary nodule.",
    "Lung Opacity": "There is an opacity in the lung.",
    "Edema": "There is pulmonary edema.",
    "Consolidation": "There is focal consolidation.",
    "Pneumonia": "Findings are consistent with pneumonia.",
    "Atelectasis": "There is atelectasis.",
    "Pneumothorax": "There is a pneumothorax.",
    "Pleural Effusion": "There is a pleural effusion.",
    "Pleural Other": "There is pleural thickening.",
    "Fracture": "There is a rib fracture.",
    "Support Devices": "Support devices are present.",
}
#: Negative statements for common findings (only those that are not positive are said).
NEGATIVE_SENTENCES: dict[str, str] = {
    "Cardiomegaly": "The heart size is normal.",
    "Pneumothorax": "There is no pneumothorax.",
    "Pleural Effusion": "There is no pleural effusion.",
    "Consolidation": "There is no focal consolidation.",
}
NORMAL_REPORT = "The heart size and mediastinal contours are normal. The lungs are clear. There is no pleural effusion or pneumothorax."


@dataclass(frozen=True)
class LabelTemplateConfig:
    """Options of the label-template report generator."""

    negatives: bool = True
    """Add the negative statements of `NEGATIVE_SENTENCES` for findings that are not positive."""
    threshold: float = 0.5
    """A label counts as positive at or above this value."""


def template_report(positive: Sequence[str], negatives: bool = True) -> str:
    """The report of a set of positive CheXpert categories."""
    findings = [p for p in positive if p in POSITIVE_SENTENCES]
    if not findings:
        return NORMAL_REPORT
    sentences = [POSITIVE_SENTENCES[p] for p in findings]
    if negatives:
        sentences += [s for k, s in NEGATIVE_SENTENCES.items() if k not in findings]
    return " ".join(sentences)


class LabelTemplate(GeneratorBase):
    """Reports from label vectors by fixed sentences (no image, nothing fitted)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"labels"}, returns={"report"}, requires={"labels"})
    Config = LabelTemplateConfig
    version: ClassVar[str] = "1"

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.metrics.chexlabel import CATEGORIES

        for cond in conditions:
            values = cond.labels.tolist()
            if len(values) != len(CATEGORIES):
                raise ValueError(f"label-template needs {len(CATEGORIES)}-label vectors, got {len(values)}")
            positive = [c for c, v in zip(CATEGORIES, values) if v >= self.config.threshold]
            yield Sample(report=template_report(positive, self.config.negatives), labels=cond.labels.clone())

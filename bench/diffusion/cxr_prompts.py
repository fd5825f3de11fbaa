"""Chest X-ray label prompts shared by the chapter-6 text-to-image generators (CXR-IRGen's vision module and the
vanilla-ldm baseline; issue 22 "Structure": moved from ``methods/cxr_irgen/vision.py``, which re-exports them, so
that the baseline imports no method folder).

* `label_to_prompt`: label vector -> semi-structured prompt (thesis section 6.3.1, spec research/ch6_cxr.md
  section 2), in the thesis wording ("A chest X-Ray image with ..., without ..., and unclear about ...") or the
  code's ("A chest X ray image with ..., without ..., and with uncertain ..."). Values follow CheXpert's raw
  convention (1 positive, 0 negative, -1 uncertain, NaN not mentioned); a binarised condition vector only names
  positives.
* `binary_labels`: a condition's binarised vector as prompt values.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def label_to_prompt(values: Sequence[float], wording: str = "thesis") -> str:
    """The prompt of one label vector (CheXpert order of `bench.metrics.chexlabel.CATEGORIES`)."""
    from bench.metrics.chexlabel import CATEGORIES

    vals = [float(v) for v in values]
    if len(vals) != len(CATEGORIES):
        raise ValueError(f"need a {len(CATEGORIES)}-label vector, got {len(vals)}")
    names = [c.lower() for c in CATEGORIES]
    pos = [n for n, v in zip(names, vals) if v == 1]
    neg = [n for n, v in zip(names, vals) if v == 0]
    unc = [n for n, v in zip(names, vals) if v == -1]
    if wording == "code":
        text = "A chest X ray image"
        if pos:
            text += " with " + " and ".join(pos)
        if neg:
            text += ", without " + " and ".join(neg)
        if unc:
            text += ", and with uncertain " + " and ".join(unc)
        return text
    if wording != "thesis":
        raise ValueError(f"prompt wording must be 'thesis' or 'code', got {wording!r}")
    parts = []
    if pos:
        parts.append("with " + ", ".join(pos))
    if neg:
        parts.append("without " + ", ".join(neg))
    if unc:
        parts.append("unclear about " + ", ".join(unc))
    if not parts:
        return "A chest X-Ray image"
    if len(parts) > 1:
        parts[-1] = "and " + parts[-1]
    return "A chest X-Ray image " + ", ".join(parts)


def binary_labels(labels: Any) -> list[float]:
    """A condition's binarised vector (a tensor) as prompt values: positives 1, everything else not mentioned (NaN)."""
    return [1.0 if float(v) >= 0.5 else float("nan") for v in labels.tolist()]

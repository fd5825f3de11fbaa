"""A rule-based CheXpert-style report labeler and the clinical-efficacy (CE) F1 of chapter 6.

The original CheXpert labeler (Irvin et al. 2019) needs a constituency parser and
models that cannot be fetched offline (research ch6 section 10.2). This module is
an *approximation written by this project*: its own mention phrase lists, surface
(NegEx-style) negation and uncertainty trigger rules scoped to a clause, and the
CheXpert aggregation rules. Numbers from it are "CheXpert-style", never "CheXpert".

Output convention (as CheXpert): per report and observation, ``1`` positive,
``0`` negative, ``-1`` uncertain, ``NaN`` not mentioned; 14 columns in `CATEGORIES`
order. Per mention the precedence is: negated-uncertainty phrase ("cannot be
excluded") -> uncertain; else negation -> negative; else uncertainty -> uncertain;
else positive. Per report: any positive -> 1, else any uncertain -> -1, else any
negative -> 0. "CHF"/"heart failure" adds an uncertain Cardiomegaly mention.
No Finding = 1 iff no other observation except Support Devices is positive or
uncertain, else NaN.

CE F1 (research ch6 section 5.8, harness default): binarise ``y = (label == 1)``
(blank and uncertain count as negative), then sklearn F1 over the 14 columns,
``average="macro"`` (headline) and ``"micro"``, plus the micro F1 over the five
labels Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FIVE_LABELS: tuple[str, ...] = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

_SIZE = r"(?:(?:very |only )?(?:mildly|moderately|severely|markedly|slightly|minimally|massively|mild|moderate|severe|marked|slight|minimal|stably|again|still|now) )*"

# Mention phrases (regex, applied to the cleaned lowercase sentence), written for this project.
MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"\b(?:enlarged|widened|wide|prominent|enlarging|widening) (?:of the )?(?:cardio)?mediastin\w*",
        r"\b(?:cardio)?mediastin\w*(?: silhouette| contours?| shadow)? (?:is |are |appears |remains )?" + _SIZE + r"(?:enlarged|widened|wide|prominent)",
        r"\bmediastinal (?:widening|enlargement|prominence)",
    ),
    "Cardiomegaly": (
        r"\bcardiomegaly",
        r"\b(?:enlarged|enlargement of the) (?:heart|cardiac (?:silhouette|shadow|contour))",
        r"\b(?:heart|heart size|cardiac (?:silhouette|shadow|contour|size)|cardiac) (?:is |are |appears |remains |is again )?" + _SIZE + r"(?:enlarged|increased|large|prominent)",
        r"\bcardiac enlargement",
        r"\b(?:heart size|cardiac silhouette|heart) (?:is )?(?:at )?(?:the )?(?:upper limits? of normal|top normal|top-normal|borderline)",
        r"\bborderline (?:cardiomegaly|heart size|enlarged heart)",
    ),
    "Lung Lesion": (
        r"\bnodul(?:e|es|ar densit\w+|ar opacit\w+|arity)\b",
        r"\b(?:mass|masses|tumou?rs?|neoplasms?|carcinoma|metastas[ie]s|metastatic disease|cavitary lesions?|cavitation)\b",
        r"\b(?:lung|pulmonary|parenchymal|cavitary|spiculated) lesions?\b",
    ),
    "Lung Opacity": (
        r"\bopaci(?:ty|ties|fication|fied)\b",
        r"\binfiltrat\w*",
        r"\bair ?space (?:disease|opaci\w+|process)",
        r"\bhaz(?:y|iness)\b",
        r"\b(?:increased|patchy|streaky|hazy|focal|ill-defined) (?:density|densities)\b",
    ),
    "Edema": (
        r"\bedema\b",
        r"\b(?:vascular|pulmonary|interstitial|venous) (?:congestion|engorgement|prominence|redistribution)",
        r"\bcephalization",
        r"\bkerley b",
        r"\b(?:congestive heart failure|chf)\b",
    ),
    "Consolidation": (r"\bconsolidat\w*",),
    "Pneumonia": (r"\bpneumonia\w*", r"\b(?:infection|infectious process|infectious etiology)\b", r"\bbronchopneumonia"),
    "Atelectasis": (r"\batelecta\w*", r"\b(?:lobar|lung|lobe) collapse", r"\bcollapse of the (?:right|left)"),
    "Pneumothorax": (r"pneumothora\w*", r"\bpneumothoraces"),
    "Pleural Effusion": (
        r"\beffusions?\b",
        r"\bhydrothorax",
        r"\bfluid in the (?:right |left )?(?:pleural|fissure|costophrenic)",
        r"\bblunt\w* of the (?:right |left |bilateral |posterior )*costophrenic",
        r"\bcostophrenic (?:angle|angles|sulcus|sulci|recess|recesses) (?:is |are )?blunt\w*",
    ),
    "Pleural Other": (
        r"\bpleural (?:thickening|plaques?|scar\w*|calcification\w*|fibrosis)",
        r"\bthicken\w* of the (?:right |left )?pleura",
        r"\bpleuro-?parenchymal (?:scar\w*|thicken\w*|opaci\w+)",
        r"\bfibrothorax",
        r"\bapical (?:pleural )?caps?\b",
    ),
    "Fracture": (r"\bfractur\w*",),
    "Support Devices": (
        r"\b(?:endotracheal|tracheostomy|chest|feeding|nasogastric|orogastric|enteric|gastrostomy|et|ng|og) tubes?\b",
        r"\b(?:central venous|central|picc|venous|midline|swan-ganz|dialysis|jugular|subclavian) (?:line|catheter)s?\b",
        r"\bcatheters?\b",
        r"\b(?:pacemaker|pacer|defibrillator|aicd|icd|loop recorder)\b",
        r"\b(?:pacer|pacing|pacemaker|transvenous) (?:wires?|leads?)\b",
        r"\b(?:port-?a-?cath|power port|chest port|infusion port)\b",
        r"\bstents?\b",
        r"\b(?:valve replacement|prosthetic valve|mitral valve prosthesis|aortic valve prosthesis|valvular prosthesis)",
        r"\b(?:drains?|drainage catheter)\b",
        r"\b(?:support|medical|cardiac|implanted|monitoring) devices?\b",
    ),
}

# Phrases that look like a mention but are not one (removed before matching).
UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Lung Lesion": (r"\bcalcified (?:nodul\w+|granulom\w+|lymph nodes?)", r"\b(?:osseous|bony|bone|lytic|sclerotic|blastic|skin|soft tissue|breast) (?:lesions?|mass(?:es)?|nodules?)", r"\bnipple shadows?"),
    "Lung Opacity": (r"\b(?:soft tissue|breast|bone|osseous) (?:densit\w+|opacit\w+)", r"\bnipple shadows?"),
    "Edema": (r"\b(?:soft tissue|subcutaneous) edema",),
    "Pleural Effusion": (r"\bpericardial effusions?",),
    "Enlarged Cardiomediastinum": (r"\bmediastinal (?:lymph|clips?|wires?|drains?)",),
    "Support Devices": (r"\bsternotomy (?:wires?|sutures?)", r"\bsurgical clips?"),
}

# Negative mentions without negation words ("heart size is normal").
NORMAL_MENTIONS: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        r"\b(?:heart|heart size|cardiac silhouette|cardiac size|cardiac contour)s? (?:is |are |appears |remains )?(?:normal|within normal limits|unremarkable|stable)(?! enlarged)",
        r"\bnormal (?:heart size|heart|cardiac size|cardiac silhouette)",
    ),
    "Enlarged Cardiomediastinum": (
        r"\b(?:cardio)?mediastin\w*(?: silhouette| contours?)? (?:is |are |appears |remains )?(?:normal|within normal limits|unremarkable|stable)",
        r"\bnormal (?:cardio)?mediastin\w*",
    ),
}

# Uncertainty phrases that contain a negation word; they win over negation.
NEGATED_UNCERTAINTY = (
    r"\b(?:can ?not|could not|may not|cannot) (?:be )?(?:entirely |completely |definitely )?(?:excluded|exclude|ruled out|rule out)",
    r"\bnot (?:be )?(?:entirely |completely |definitely )?(?:excluded|ruled out)",
    r"\b(?:difficult|hard|unable) to (?:exclude|rule out)",
    r"\bno (?:definite )?(?:change|interval change)? ?(?:in|of) (?:the )?(?:possible|probable)",
)
PRE_NEGATION = (
    r"\bno\b", r"\bnot\b", r"\bwithout\b", r"\bnegative for\b", r"\bfree of\b", r"\bclear of\b", r"\babsence of\b",
    r"\bresolution of\b", r"\bresolved\b", r"\bnor\b", r"\bneither\b", r"\bdenies\b", r"\brather than\b", r"\bremoval of\b",
)
POST_NEGATION = (
    r"\b(?:is|are|was|were|has been|have been)? ?(?:not (?:seen|identified|visualized|present|evident|demonstrated|appreciated|noted|detected)|absent)\b",
    r"\b(?:has|have)? ?(?:resolved|cleared|been removed|been resolved)\b",
    r"\bno longer\b",
)
PRE_UNCERTAINTY = (
    r"\b(?:may|might|could|possibl[ey]|probabl[ey]|likely|suggest\w*|suspicious|suspect\w*|concerning for|concern for|worrisome for|question of|questionabl[ey]|equivocal|borderline|versus|vs|differential|consider\w*|indeterminate|uncertain|presumed|presumably|cannot exclude|favor\w*|represents? (?:either)?)\b",
    r"\bupper limits? of normal\b", r"\btop normal\b", r"\btop-normal\b",
)
POST_UNCERTAINTY = (
    r"\b(?:is|are)? ?(?:possible|likely|suspected|questioned|favored|not excluded|a consideration|in question)\b",
    r"\b(?:versus|vs)\b", r"\bor (?:less likely )?(?:atelecta|pneumoni|consolidat|infiltrat|edema|effusion|scar|fibros|mass|nodul)\w*",
    r"\?",
    r"\bupper limits? of normal\b", r"\btop normal\b", r"\bborderline\b",
)
# Clause boundaries: negation and uncertainty do not cross them.
CLAUSE_BREAK = re.compile(r"[;:]|\b(?:but|however|although|though|except|whereas|while|which|aside from|apart from)\b|, (?:there (?:is|are)|with)\b")


def clean_report(text: str) -> str:
    """Lowercase and normalise a report: ``and/or`` -> ``or``, ``a/b`` -> ``a or b``, collapse dots and spaces."""
    t = text.lower()
    t = t.replace("and/or", "or")
    t = re.sub(r"(?<=[a-z])/(?=[a-z])", " or ", t)
    t = re.sub(r"\.{2,}", ".", t)
    t = re.sub(r"\s+", " ", t)
    return t.strip()


def split_sentences(text: str) -> list[str]:
    """Regex sentence split on ``. ! ?`` followed by space (a list number "1." stays a tiny sentence)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _compile(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_MENTION_RE = {k: _compile(v) for k, v in MENTIONS.items()}
_UNMENTION_RE = {k: _compile(v) for k, v in UNMENTIONS.items()}
_NORMAL_RE = {k: _compile(v) for k, v in NORMAL_MENTIONS.items()}
_NEG_UNC_RE = _compile(NEGATED_UNCERTAINTY)
_PRE_NEG_RE = _compile(PRE_NEGATION)
_POST_NEG_RE = _compile(POST_NEGATION)
_PRE_UNC_RE = _compile(PRE_UNCERTAINTY)
_POST_UNC_RE = _compile(POST_UNCERTAINTY)


def _clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    lo, hi = 0, len(sentence)
    for m in CLAUSE_BREAK.finditer(sentence):
        if m.end() <= start:
            lo = m.end()
        elif m.start() >= end and hi == len(sentence):
            hi = m.start()
    return lo, hi


def classify_mention(sentence: str, start: int, end: int) -> float:
    """Value of the mention at ``sentence[start:end]``: 1 positive, 0 negative, -1 uncertain."""
    lo, hi = _clause_bounds(sentence, start, end)
    before, after = sentence[lo:start], sentence[end:hi]
    clause = sentence[lo:hi]
    if _NEG_UNC_RE.search(clause):
        return UNCERTAIN
    if _PRE_NEG_RE.search(before) or _POST_NEG_RE.search(after):
        return NEGATIVE
    if _PRE_UNC_RE.search(before) or _POST_UNC_RE.search(after):
        return UNCERTAIN
    return POSITIVE


def _mask_spans(sentence: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return sentence
    return pattern.sub(lambda m: " " * len(m.group(0)), sentence)


def label_report(text: str) -> np.ndarray:
    """Label one report.

    Args:
        text: free-text report (findings and/or impression); may be empty.

    Returns:
        float array (14,) in `CATEGORIES` order with 1 / 0 / -1 / NaN.
    """
    mentions: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    for sentence in split_sentences(clean_report(text or "")):
        for cat, pattern in _MENTION_RE.items():
            s = _mask_spans(sentence, _UNMENTION_RE.get(cat))
            for m in pattern.finditer(s):
                mentions[cat].append(classify_mention(sentence, m.start(), m.end()))
        for cat, pattern in _NORMAL_RE.items():
            if pattern.search(sentence):
                mentions[cat].append(NEGATIVE)
        for m in re.finditer(r"\b(?:congestive heart failure|heart failure|chf)\b", sentence):
            if classify_mention(sentence, m.start(), m.end()) != NEGATIVE:
                mentions["Cardiomegaly"].append(UNCERTAIN)
    out = np.full(len(CATEGORIES), np.nan)
    for i, cat in enumerate(CATEGORIES):
        vals = mentions[cat]
        if POSITIVE in vals:
            out[i] = POSITIVE
        elif UNCERTAIN in vals:
            out[i] = UNCERTAIN
        elif NEGATIVE in vals:
            out[i] = NEGATIVE
    findings = [i for i, c in enumerate(CATEGORIES) if c not in ("No Finding", "Support Devices")]
    if not np.any(np.isin(out[findings], (POSITIVE, UNCERTAIN))):
        out[0] = POSITIVE
    return out


def label_reports(texts: Sequence[str]) -> np.ndarray:
    """Label many reports: float array (N, 14) with 1 / 0 / -1 / NaN."""
    return np.stack([label_report(t) for t in texts]) if len(texts) else np.zeros((0, len(CATEGORIES)))


def binarize(labels: Any, uncertain_as: float = 0.0) -> np.ndarray:
    """``(label == 1)`` as int; blank (NaN) and negative -> 0; uncertain -> ``uncertain_as`` (default 0)."""
    arr = np.asarray(labels, dtype=np.float64)
    out = (arr == POSITIVE).astype(np.int64)
    if uncertain_as:
        out[arr == UNCERTAIN] = 1
    return out


def chexpert_f1(reference: Any, generated: Any, uncertain_as: float = 0.0) -> dict[str, float]:
    """Clinical-efficacy F1 of generated vs reference label matrices (ch6 section 5.8).

    Args:
        reference: labels of the reference reports, (N, 14) in `CATEGORIES` order,
            values 1 / 0 / -1 / NaN (e.g. from `label_reports`).
        generated: labels of the generated reports, same layout.
        uncertain_as: 0 (default, R2Gen/CXR-RePaiR convention) or 1 (M2Trans).

    Returns:
        ``chexpert_f1_macro`` (headline, 14 labels, zero_division=0),
        ``chexpert_f1_micro`` and ``chexpert_f1_micro5`` (five labels).
    """
    from sklearn.metrics import f1_score

    ref, gen = binarize(reference, uncertain_as), binarize(generated, uncertain_as)
    if ref.shape != gen.shape or ref.ndim != 2 or ref.shape[1] != len(CATEGORIES):
        raise ValueError(f"need two (N, {len(CATEGORIES)}) label matrices, got {ref.shape} and {gen.shape}")
    if ref.shape[0] == 0:
        raise ValueError("no reports to score")
    five = [CATEGORIES.index(c) for c in FIVE_LABELS]
    return {
        "chexpert_f1_macro": float(f1_score(ref, gen, average="macro", zero_division=0)),
        "chexpert_f1_micro": float(f1_score(ref, gen, average="micro", zero_division=0)),
        "chexpert_f1_micro5": float(f1_score(ref[:, five], gen[:, five], average="micro", zero_division=0)),
    }


def report_f1(reference_reports: Sequence[str], generated_reports: Sequence[str]) -> dict[str, float]:
    """Label both sets of reports with `label_reports` and return `chexpert_f1`."""
    if len(reference_reports) != len(generated_reports):
        raise ValueError(f"{len(reference_reports)} reference vs {len(generated_reports)} generated reports")
    return chexpert_f1(label_reports(reference_reports), label_reports(generated_reports))

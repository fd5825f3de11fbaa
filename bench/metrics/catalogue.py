"""The catalogue of metric keys: direction, value range, display name, description.

Every metric key a task writes into a result record has an entry here, either
exact (``"dice"``) or as a bracketed family (``"fd[*]"`` matches ``fd[mini-clip]``,
``fd[inception-v3]``...). Keys name their protocol (STYLE 6.7): the extractor of a
Frechet distance, the data range of SSIM. ``bench submit`` validates values with
`check_value`.

This module imports nothing heavy, so the CLI can use it at start-up.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricInfo:
    """Static description of one metric key (or family of keys)."""

    name: str
    """Key or family pattern, e.g. ``"dice"`` or ``"fd[*]"``."""
    higher_is_better: bool | None
    """Direction; ``None`` for descriptive quantities (ITA, p-values...) that have none."""
    lower: float | None
    """Smallest possible value (inclusive), ``None`` if unbounded below."""
    upper: float | None
    """Largest possible value (inclusive), ``None`` if unbounded above."""
    display_name: str
    """Short name for tables, e.g. ``"FD (DINOv2)"`` is built from ``"FD"`` and the bracket."""
    description: str
    """One sentence: definition and source section."""

    def in_range(self, value: float) -> bool:
        """True if ``value`` lies within [lower, upper] (NaN is never in range)."""
        if math.isnan(value):
            return False
        if self.lower is not None and value < self.lower:
            return False
        return not (self.upper is not None and value > self.upper)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """``"fd[*]"`` -> regex matching ``fd[`` + one or more characters + ``]`` (``*`` is the only wildcard)."""
    return re.compile(".+".join(re.escape(part) for part in pattern.split("*")))


class MetricCatalogue(dict):
    """A ``dict[str, MetricInfo]`` whose lookups also match bracketed families.

    ``catalogue["fd[dinov2-base]"]`` returns the ``"fd[*]"`` entry (with ``name``
    set to the looked-up key and the bracket appended to the display name).
    Exact keys win over patterns; among patterns the longest (most specific) wins.
    """

    def _match(self, key: str) -> MetricInfo | None:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        patterns = [p for p in self.keys() if "*" in p and _pattern_regex(p).fullmatch(key)]
        if not patterns:
            return None
        pattern = max(patterns, key=len)
        info: MetricInfo = dict.__getitem__(self, pattern)
        bracket = key[key.index("[") :] if "[" in key else ""
        return MetricInfo(
            name=key,
            higher_is_better=info.higher_is_better,
            lower=info.lower,
            upper=info.upper,
            display_name=f"{info.display_name} {bracket}".strip(),
            description=info.description,
        )

    def __missing__(self, key: str) -> MetricInfo:
        info = self._match(key)
        if info is None:
            import difflib

            near = difflib.get_close_matches(key, list(self.keys()), n=3)
            hint = f" Did you mean: {', '.join(near)}?" if near else ""
            raise KeyError(f"Unknown metric key '{key}'.{hint} Known: {', '.join(sorted(self.keys()))}")
        return info

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._match(key) is not None

    def get(self, key: str, default: MetricInfo | None = None) -> MetricInfo | None:  # type: ignore[override]
        info = self._match(key)
        return default if info is None else info


def _add(cat: MetricCatalogue, name: str, hib: bool | None, lo: float | None, hi: float | None, disp: str, desc: str) -> None:
    if dict.__contains__(cat, name):
        raise ValueError(f"metric key '{name}' registered twice")
    dict.__setitem__(cat, name, MetricInfo(name, hib, lo, hi, disp, desc))


def _build() -> MetricCatalogue:
    c = MetricCatalogue()
    # segmentation (thesis Eq. 4.21-4.22)
    _add(c, "dice", True, 0.0, 1.0, "Dice", "Mean per-image Dice 2|P&T|/(|P|+|T|); empty vs empty = 1 (ch4 3.3).")
    _add(c, "iou", True, 0.0, 1.0, "IoU", "Mean per-image IoU |P&T|/|P|T|; empty vs empty = 1 (ch4 3.3).")
    _add(c, "dice[*]", True, 0.0, 1.0, "Dice", "Mean per-image Dice on a named subset or segmenter, e.g. dice[S_0.6].")
    _add(c, "iou[*]", True, 0.0, 1.0, "IoU", "Mean per-image IoU on a named subset or segmenter, e.g. iou[S_0.6].")
    # segmentation surface and overlap terms of DiffBoost Table II (task.surface_metrics; per image or per case)
    _add(c, "precision", True, 0.0, 1.0, "Precision", "Mean per-image (or per-case) |P&T|/|P| of the masks (DiffBoost Table II).")
    _add(c, "recall", True, 0.0, 1.0, "Recall", "Mean per-image (or per-case) |P&T|/|T| of the masks (DiffBoost Table II).")
    _add(c, "hd95", False, 0.0, None, "HD95", "95th-percentile symmetric Hausdorff distance of mask surfaces, mm or pixels as comparisons.units says (DiffBoost Table II).")
    _add(c, "assd", False, 0.0, None, "ASSD", "Average symmetric surface distance of mask surfaces, mm or pixels as comparisons.units says (DiffBoost Table II).")
    for m, disp in (("precision", "Precision"), ("recall", "Recall"), ("hd95", "HD95"), ("assd", "ASSD")):
        _add(c, f"{m}[*]", m in ("precision", "recall"), 0.0, 1.0 if m in ("precision", "recall") else None, disp,
             f"{disp} of the bracketed segmenter or subset.")
    # classification (ch4 3.2)
    for avg, what in (("weighted", "support-weighted (the thesis' 'micro')"), ("macro", "unweighted mean over classes")):
        for m, disp in (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1")):
            _add(c, f"{m}_{avg}", True, 0.0, 1.0, f"{disp} ({avg})", f"{disp}, {what} (sklearn average='{avg}').")
            _add(c, f"{m}_{avg}[*]", True, 0.0, 1.0, f"{disp} ({avg})",
                 f"{disp}, {what}, on the bracketed external test set, e.g. {m}_{avg}[derm7pt] (Table 4.4).")
    _add(c, "f1[*]", True, 0.0, 1.0, "F1", "Class-wise F1 of the bracketed class, e.g. f1[MEL] (Table 4.3).")
    _add(c, "accuracy", True, 0.0, 1.0, "Accuracy", "Fraction of correct predictions.")
    _add(c, "balanced_accuracy", True, 0.0, 1.0, "Balanced accuracy", "Mean per-class recall.")
    _add(c, "accuracy[*]", True, 0.0, 1.0, "Accuracy", "Accuracy on the bracketed external test set.")
    _add(c, "balanced_accuracy[*]", True, 0.0, 1.0, "Balanced accuracy", "Mean per-class recall on the bracketed external test set.")
    _add(c, "auroc", True, 0.0, 1.0, "AUROC", "Area under the ROC curve (binary, or one-vs-rest macro).")
    _add(c, "auroc[*]", True, 0.0, 1.0, "AUROC", "AUROC of the bracketed target, e.g. auroc[Cardiomegaly] (Table 6.2).")
    # image quality
    _add(c, "fd[*]", False, 0.0, None, "FD", "Frechet distance of Gaussian fits to the bracketed extractor's features.")
    _add(c, "kid[*]", False, None, None, "KID", "Kernel (cubic polynomial) MMD^2, unbiased, in the bracketed extractor's features.")
    _add(c, "ms_ssim", True, 0.0, 1.0, "MS-SSIM", "Mean MS-SSIM of index-aligned pairs, data_range=1 (Table 4.1).")
    _add(c, "ms_ssim[*]", True, 0.0, 1.0, "MS-SSIM", "MS-SSIM under the bracketed protocol, e.g. ms_ssim[win=3] for small images.")
    _add(c, "ssim[range=1]", True, -1.0, 1.0, "SSIM (range 1)", "SSIM of [0,1] pairs at the correct data_range=1 (ch6 5.3).")
    _add(c, "ssim[range=255]", True, -1.0, 1.0, "SSIM (range 255)", "SSIM of [0,1] pairs at data_range=255, as the reference code (ch6 5.3).")
    _add(c, "ssim[*]", True, -1.0, 1.0, "SSIM", "SSIM under the bracketed data range.")
    _add(c, "psnr", True, None, None, "PSNR (dB)", "10 log10(MAX^2 / MSE) of paired images, mean over pairs (ch6 5.2).")
    _add(c, "mae", False, 0.0, 1.0, "MAE", "Mean absolute error of [0,1] reconstructions against their originals, mean over images (DiffBoost Table I).")
    _add(c, "mse", False, 0.0, 1.0, "MSE", "Mean squared error of [0,1] reconstructions against their originals, mean over images (DiffBoost Table I).")
    _add(c, "rmse", False, 0.0, 1.0, "RMSE", "Root of each image's MSE, mean over images (DiffBoost Table I).")
    _add(c, "lpips_diversity", True, 0.0, None, "LPIPS diversity", "Mean LPIPS(AlexNet) over seeded random distinct pairs within the generated set (Table 4.1).")
    _add(c, "lpips_diversity[*]", True, 0.0, None, "LPIPS diversity", "Within-set LPIPS of the bracketed kind, e.g. lpips_diversity[masks] (Table 4.7).")
    _add(c, "lpips", False, 0.0, None, "LPIPS", "Mean LPIPS(AlexNet) of paired images (Table 5.2: generated vs style reference).")
    _add(c, "lpips[*]", False, 0.0, None, "LPIPS", "Paired LPIPS with the bracketed trunk, e.g. lpips[alex-random] (the mini proxy).")
    # text (ch6 5.5-5.8)
    for n in range(1, 5):
        _add(c, f"bleu{n}", True, 0.0, 1.0, f"BLEU-{n}", f"Corpus BLEU-{n}, nltk, uniform weights, no smoothing (ch6 5.5).")
    _add(c, "rouge_l", True, 0.0, 1.0, "ROUGE-L", "Mean ROUGE-L F (beta=1, rouge-score) over pairs (ch6 5.6).")
    _add(c, "chexpert_f1_macro", True, 0.0, 1.0, "CE F1 (macro)", "Macro F1 over 14 CheXpert labels, blank/uncertain as negative (ch6 5.8).")
    _add(c, "chexpert_f1_micro", True, 0.0, 1.0, "CE F1 (micro)", "Micro F1 over 14 CheXpert labels (ch6 5.8).")
    _add(c, "chexpert_f1_micro5", True, 0.0, 1.0, "CE F1 (5-micro)", "Micro F1 over Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion.")
    # embedding similarity (ch3 3)
    _add(c, "clip_i", True, -1.0, 1.0, "CLIP-I", "Mean cosine of CLIP image embeddings, generated x reference (ch3 3).")
    _add(c, "clip_t", True, -1.0, 1.0, "CLIP-T", "Mean cosine of CLIP image and prompt embeddings, identifiers stripped (ch3 3).")
    _add(c, "dino", True, -1.0, 1.0, "DINO", "Mean cosine of DINOv2 CLS embeddings, generated x reference (ch3 3).")
    _add(c, "clip_i_sync", False, 0.0, 2.0, "CLIP-I-sync", "|CLIP-I(concept 1) - CLIP-I(concept 2)| (ch3 3).")
    for k, disp in (("clip_i", "CLIP-I"), ("clip_t", "CLIP-T"), ("dino", "DINO")):
        _add(c, f"{k}[*]", True, -1.0, 1.0, disp, f"{disp} with the bracketed encoder or variant, e.g. {k}[masked], {k}[mini-clip].")
    _add(c, "clip_i_sync[*]", False, 0.0, 2.0, "CLIP-I-sync", "CLIP-I-sync with the bracketed encoder or variant.")
    # concept-mini ground truth (concept task, beyond the thesis; bench/metrics/concept.py)
    _add(c, "presence[*]", True, 0.0, 1.0, "Presence", "Share of images showing their concept(s)' distinctive colours (single / group).")
    _add(c, "leakage[*]", False, 0.0, 1.0, "Leakage", "Share of [V_i]-only images showing another concept's distinctive colours.")
    _add(c, "attn_mask_iou", True, 0.0, 1.0, "Attention-mask IoU", "IoU of a method's learned concept masks with the true object masks.")
    _add(c, "max_ca_score[*]", None, 0.0, 1.0, "Max CA score", "Highest raw cross-attention of [V_k] inside its mask at initialisation, per <scene>,subject<k> (ch3 Table 3.5).")
    _add(c, "ratio_gap", None, 0.0, 1.0, "Ratio gap", "Mean over scenes of |S_1 - S_2| / (S_1 + S_2) of the reported attention scores (ch3 Eq. 3.4; Table 3.3's subset).")
    _add(c, "ratio_gap[*]", None, 0.0, 1.0, "Ratio gap", "Ratio gap of the bracketed subset (subset_min: the smallest gap kept).")
    # contrast (ch5 1)
    _add(c, "ita_lesion", None, -90.0, 90.0, "ITA lesion", "ITA (deg) over lesion pixels (ch5 Eq. 5.1).")
    _add(c, "ita_skin", None, -90.0, 90.0, "ITA skin", "ITA (deg) over non-lesion pixels (ch5 Eq. 5.1).")
    _add(c, "ita_difference", None, -180.0, 180.0, "ITA difference", "ITA skin - ITA lesion (deg); < 30 is low contrast (ch5 1.2).")
    _add(c, "low_contrast_fraction", None, 0.0, 1.0, "Low-contrast fraction", "Fraction of images with ITA difference < 30.")
    # statistics
    _add(c, "p_value[*]", None, 0.0, 1.0, "p", "Paired t-test p-value for the bracketed metric.")
    _add(c, "relative_gain[*]", True, -1.0, None, "Rel. gain", "Mean over models of aug/orig - 1 for the bracketed metric.")
    return c


METRIC_INFO: MetricCatalogue = _build()
"""Every metric key tasks write; lookups match bracketed families (``fd[*]``)."""


def metric_info(key: str) -> MetricInfo:
    """The `MetricInfo` of ``key``; raises KeyError listing the known keys."""
    return METRIC_INFO[key]


def check_value(key: str, value: float | None) -> str | None:
    """Validate one reported value; returns a problem message or None if fine.

    ``None`` (how NaN/inf are stored in records) is accepted.
    """
    if value is None:
        return None
    info = METRIC_INFO.get(key)
    if info is None:
        return f"unknown metric key '{key}'"
    if isinstance(value, float) and math.isinf(value) and key == "psnr":
        return None
    if not info.in_range(float(value)):
        return f"{key}={value} is outside [{info.lower}, {info.upper}]"
    return None

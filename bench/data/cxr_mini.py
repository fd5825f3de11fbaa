"""cxr-mini: 64x64 grayscale chest-like images whose findings follow a CheXpert label vector, with real reports.

Each sample takes a real IU X-ray (Open-i) report from the archive torchxrayvision ships, labels it with
the project's CheXpert-style labeler (`bench.metrics.chexlabel.label_report`, an approximation of the
CheXpert labeler), and draws a chest-like image whose findings follow those labels:

* heart width from Cardiomegaly (cardiothoracic ratio 0.40-0.48 normal, 0.56-0.68 enlarged), a wide upper
  mediastinum for Enlarged Cardiomediastinum;
* Pleural Effusion: fluid with a meniscus in one or both costophrenic angles; Pleural Other: lateral thickening;
* Lung Opacity / Consolidation / Pneumonia: patchy or dense air-space opacity in a lung zone; Edema: bilateral
  perihilar haze; Atelectasis: a plate-like band at a base; Lung Lesion: a round nodule;
* Pneumothorax: an apical lucency without lung markings behind a pleural line;
* Fracture: a rib with a step; Support Devices: a tube line and a device.

So image, label vector and report agree by construction (report and labels exactly; image and labels up
to the rendering). Determinism: a sample is a function of ``(world_seed, split, index)``; reports are split
into train / val / test by a hash of their id, so test reports never occur in training.
"""
from __future__ import annotations

import hashlib
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import DataError, DatasetSource, LazySamples

logger = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: The world-oracle's stream (`oracle_sample`): a code no split uses, so its images are never a split's.
ORACLE_SPLIT_CODE = 3
DEFAULT_SIZES = {"train": 2000, "val": 200, "test": 500}
#: Share of the report pool in each split (by hash of the report id).
SPLIT_SHARES = {"train": 0.8, "val": 0.05, "test": 0.15}


def _report_text(sections: dict[str, str]) -> str:
    findings, impression = sections.get("FINDINGS", "") or "", sections.get("IMPRESSION", "") or ""
    return " ".join(t for t in (findings, impression) if t)


@lru_cache(maxsize=1)
def _iu_reports() -> tuple[dict[str, Any], ...]:
    """IU X-ray reports with text: ``id``, ``report`` (FINDINGS then IMPRESSION), ``labels`` (14, 1/0/-1/NaN)."""
    from bench.data.cxr import iu_reports_archive, read_iu_reports
    from bench.metrics.chexlabel import label_report

    out = []
    for r in read_iu_reports(iu_reports_archive()):
        text = _report_text(r["sections"])
        if len(text.split()) < 3:
            continue
        out.append({"id": r["uid"], "report": text, "labels": label_report(text)})
    return tuple(out)


def report_words(min_count: int = 3) -> list[str]:
    """Lower-case words of the IU reports (FINDINGS + IMPRESSION) occurring at least ``min_count`` times."""
    from collections import Counter

    from bench.data.cxr import iu_reports_archive, read_iu_reports

    counts: Counter[str] = Counter()
    for r in read_iu_reports(iu_reports_archive()):
        counts.update(re.findall(r"[a-z]+", _report_text(r["sections"]).lower()))
    return sorted(w for w, c in counts.items() if c >= min_count)


def _split_of(report_id: str) -> str:
    h = int(hashlib.sha256(report_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < SPLIT_SHARES["train"] else "val" if h < SPLIT_SHARES["train"] + SPLIT_SHARES["val"] else "test"


@lru_cache(maxsize=3)
def report_pool(split: str) -> tuple[dict[str, Any], ...]:
    """The reports of one split (hash of the report id decides)."""
    return tuple(r for r in _iu_reports() if _split_of(r["id"]) == split)


def _blob(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))


def render_chest(positive: set[str], rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draw a frontal chest-like radiograph (H, W) float32 in [0, 1] showing the ``positive`` findings.

    Args:
        positive: CheXpert category names (see `bench.metrics.chexlabel.CATEGORIES`) present in the image.
        rng: random generator (patient anatomy, finding placement, exposure, noise).
        size: image side in pixels.
    """
    from scipy.ndimage import gaussian_filter

    s = float(size)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / s  # unit coordinates
    img = np.full((size, size), 0.05)
    # 1. Body and soft tissue; lungs are dark ellipses, ribs faint bright arcs.
    body = ((xx - 0.5) / 0.47) ** 2 + ((yy - 0.58) / 0.55) ** 2 < 1
    img[body] = 0.55 + rng.uniform(-0.05, 0.05)
    cx = 0.5 + rng.normal(0, 0.015)
    lung_w, lung_h, top = rng.uniform(0.17, 0.2), rng.uniform(0.3, 0.36), rng.uniform(0.18, 0.24)
    lungs = []
    for side in (-1, 1):
        lx = cx + side * rng.uniform(0.19, 0.22)
        lung = ((xx - lx) / lung_w) ** 2 + ((yy - (top + lung_h)) / lung_h) ** 2 < 1
        lung &= yy < top + lung_h * 1.55 - 0.12 * np.abs(xx - lx) / lung_w
        lungs.append((lung, lx))
        img[lung] = 0.2 + rng.uniform(-0.03, 0.03)
    lung_any = lungs[0][0] | lungs[1][0]
    for k in range(7):  # ribs
        y0 = top + 0.05 + k * lung_h * 0.26
        rib = np.abs(yy - (y0 + 0.25 * (xx - cx) ** 2 * 4)) < 0.008
        img[rib & lung_any] += 0.07
    markings = gaussian_filter(rng.standard_normal((size, size)), 1.0) * 0.03
    img[lung_any] += markings[lung_any]
    # 2. Mediastinum, spine, heart (cardiothoracic ratio from Cardiomegaly).
    med_w = rng.uniform(0.07, 0.09) * (1.7 if "Enlarged Cardiomediastinum" in positive else 1.0)
    img[(np.abs(xx - cx) < med_w) & (yy > 0.1) & (yy < 0.7)] = 0.62
    img[(np.abs(xx - cx) < 0.035) & body] = 0.72
    ctr = rng.uniform(0.56, 0.68) if "Cardiomegaly" in positive else rng.uniform(0.4, 0.48)
    thorax = 2 * (lung_w + 0.2)
    heart_rx = ctr * thorax / 2
    heart = ((xx - (cx + 0.04)) / heart_rx) ** 2 + ((yy - (top + lung_h * 1.55)) / (lung_h * 0.55)) ** 2 < 1
    img[heart & (yy > top + lung_h * 0.9)] = 0.68
    img[yy > top + lung_h * 1.6 + 0.04 * np.cos((xx - cx) * 9)] = np.maximum(
        img[yy > top + lung_h * 1.6 + 0.04 * np.cos((xx - cx) * 9)], 0.6)  # diaphragm and abdomen
    # 3. Findings.
    sides = [lungs[i] for i in rng.permutation(2)]
    if "Pleural Effusion" in positive:
        for lung, lx in sides[:int(rng.integers(1, 3))]:
            level = top + lung_h * rng.uniform(1.3, 1.5)
            meniscus = yy > level - 0.06 * ((xx - cx) / 0.4) ** 2 * np.sign(xx - cx) * np.sign(lx - cx)
            img[lung & meniscus] = 0.58
    if "Pleural Other" in positive:
        lung, lx = sides[0]
        edge = gaussian_filter(lung.astype(float), 1.0)
        img[(edge > 0.15) & (edge < 0.6) & (np.abs(xx - cx) > 0.25)] += 0.18
    for name, strength, radius in (("Lung Opacity", 0.16, 0.08), ("Consolidation", 0.28, 0.07),
                                   ("Pneumonia", 0.22, 0.09)):
        if name in positive:
            lung, lx = sides[int(rng.integers(2))]
            oy = top + lung_h * rng.uniform(0.6, 1.3)
            patch = _blob(xx, yy, lx + rng.normal(0, 0.03), oy, radius, radius * 1.3)
            patch *= 0.7 + 0.6 * gaussian_filter(rng.random((size, size)), 1.5)
            img[lung] += strength * patch[lung]
    if "Edema" in positive:
        for lung, lx in lungs:
            haze = _blob(xx, yy, (lx + cx) / 2, top + lung_h * 0.95, 0.12, 0.2)
            img[lung] += 0.2 * haze[lung]
    if "Atelectasis" in positive:
        lung, lx = sides[0]
        band = np.abs(yy - (top + lung_h * 1.3) - 0.15 * (xx - lx)) < 0.015
        img[lung & band] += 0.25
    if "Lung Lesion" in positive:
        lung, lx = sides[0]
        ny, nx = top + lung_h * rng.uniform(0.4, 1.2), lx + rng.normal(0, 0.06)
        nodule = _blob(xx, yy, nx, ny, 0.03, 0.03)
        img[lung] += 0.35 * nodule[lung]
    if "Pneumothorax" in positive:
        lung, lx = sides[0]
        apex = lung & (yy < top + lung_h * 0.9) & (np.abs(xx - lx) > lung_w * 0.35) & ((xx - lx) * (lx - cx) > 0)
        img[apex] = 0.1
        line = apex & ~gaussian_filter(apex.astype(float), 0.8).__gt__(0.95)
        img[line] += 0.12
    if "Fracture" in positive:
        lung, lx = sides[0]
        y0 = top + lung_h * rng.uniform(0.4, 1.0)
        step = np.abs(yy - y0) < 0.012
        img[step & lung & (xx > lx)] += 0.22
        img[step & lung & (xx <= lx)] -= 0.05
    if "Support Devices" in positive:
        tube_x = cx + rng.normal(0, 0.01)
        img[(np.abs(xx - tube_x - 0.02 * np.sin(yy * 8)) < 0.008) & (yy < top + lung_h * 1.1)] = 0.95
        dx, dy = rng.choice([0.25, 0.75]), rng.uniform(0.12, 0.2)
        img[(np.abs(xx - dx) < 0.05) & (np.abs(yy - dy) < 0.035)] = 0.95
    # 4. Exposure, blur and noise.
    img = gaussian_filter(img, 0.6)
    img = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    img += rng.normal(0, 0.015, size=img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def render_sample(world_seed: int, split: str, index: int, size: int = 64) -> tuple[np.ndarray, dict[str, Any]]:
    """One cxr-mini sample: image (H, W) float32 in [0, 1] and its report record (id, report, labels)."""
    from bench.metrics.chexlabel import CATEGORIES

    if split not in SPLIT_CODES:
        raise DataError(f"cxr-mini: unknown split '{split}'; splits: {', '.join(SPLIT_CODES)}")
    rng = np.random.default_rng([world_seed, SPLIT_CODES[split], index])
    pool = report_pool(split)
    record = pool[int(rng.integers(len(pool)))]
    positive = {c for c, v in zip(CATEGORIES, record["labels"]) if v == 1}
    return render_chest(positive, rng, size), record


def oracle_sample(world: dict[str, Any], key: int, size: int, label: int | None = None, shape: Any = None,
                  labels: Any = None) -> tuple[np.ndarray, None, dict[str, Any]]:
    """A fresh chest image of the world ``world`` (`CxrMini.world_spec`) whose findings follow ``labels`` (a
    binarised 14-vector in CheXpert order; None: the labels of a random training report), drawn from the oracle
    stream ``key`` (never one of the splits' images). ``label`` and ``shape`` (class and mask conditions of the
    lesion worlds) do not apply and are ignored.

    Returns:
        image (H, W, 1) float32 in [0, 1], no mask, meta (``positive``: the rendered categories).
    """
    from bench.metrics.chexlabel import CATEGORIES

    rng = np.random.default_rng([int(world["world_seed"]), ORACLE_SPLIT_CODE, int(key) % (2 ** 62)])
    if labels is None:
        pool = report_pool("train")
        values = pool[int(rng.integers(len(pool)))]["labels"]
        positive = [c for c, v in zip(CATEGORIES, values) if v == 1]
    else:
        values = [float(v) for v in labels]
        if len(values) != len(CATEGORIES):
            raise ValueError(f"cxr-mini oracle: need a {len(CATEGORIES)}-label vector, got {len(values)}")
        positive = [c for c, v in zip(CATEGORIES, values) if v >= 0.5]
    return render_chest(set(positive), rng, size)[..., None], None, {"positive": positive}


def oracle_caption(meta: dict[str, Any]) -> str:
    """The label sentence of an oracle image (the dataset's own text condition)."""
    return label_prompt(list(meta["positive"]))


class CxrMini(DatasetSource):
    """Procedural chest-like radiographs with CheXpert label vectors and real IU X-ray reports (module doc).

    ``Sample.labels`` is the binarised 14-vector (1 = positive; uncertain, negative and not mentioned are 0)
    in `bench.metrics.chexlabel.CATEGORIES` order; ``meta["raw_labels"]`` keeps 1/0/-1/NaN.
    ``Sample.prompt`` is the label-templated sentence used as text condition (positives, or "no finding").

    Options:
        sizes: samples per split, default ``{"train": 2000, "val": 200, "test": 500}``.
        world_seed: the world's seed.
    """

    id: ClassVar[str] = "cxr-mini"
    fields = frozenset({"image", "labels", "report", "prompt"})
    needs_root = False

    def __init__(self, root: Path | None = None, image_size: int | None = 64, sizes: dict[str, int] | None = None,
                 world_seed: int = 14, **options: Any) -> None:
        if options:
            raise DataError(f"cxr-mini: unknown option(s) {', '.join(sorted(options))}; valid: sizes, world_seed")
        super().__init__(root, image_size or 64)
        self.sizes = {**DEFAULT_SIZES, **(sizes or {})}
        for split in self.sizes:
            if split not in SPLIT_CODES:
                raise DataError(f"cxr-mini: unknown split '{split}' in sizes; splits: train, val, test")
        self.world_seed = int(world_seed)

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        from bench.metrics.chexlabel import CATEGORIES

        return tuple(CATEGORIES)

    def world_spec(self) -> dict[str, Any]:
        """What `oracle_sample` needs to draw fresh images of this world (in every sample's ``meta["world"]``)."""
        return {"dataset": self.id, "world_seed": self.world_seed}

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        return [f"cxm-{self.world_seed}-{split}-{i:05d}" for i in range(self.sizes[split])]

    def split_checksum(self, split: str) -> str:
        from bench.data.base import checksum_ids

        return checksum_ids([*self.split_ids(split), f"image_size={self.image_size}", "generator=cxr-mini/1"])

    def load(self, split: str) -> LazySamples:
        import torch

        from bench.interface import Sample
        from bench.metrics.chexlabel import CATEGORIES

        self._check_split(split)
        world = self.world_spec()

        def load_one(index: int, sample_id: str) -> Sample:
            image, record = render_sample(self.world_seed, split, index, self.image_size)
            raw = np.asarray(record["labels"], dtype=float)
            positive = [c for c, v in zip(CATEGORIES, raw) if v == 1]
            return Sample(image=torch.from_numpy(image)[None], labels=torch.from_numpy((raw == 1).astype(np.float32)),
                          report=record["report"], prompt=label_prompt(positive),
                          meta={"id": sample_id, "split": split, "index": index, "report_id": record["id"],
                                "raw_labels": raw.tolist(), "positive": positive, "world": world})

        return LazySamples(self.split_ids(split), load_one)


def label_prompt(positive: list[str]) -> str:
    """A templated sentence from the positive CheXpert categories (the text condition of cxr-mini)."""
    findings = [p.lower() for p in positive if p != "No Finding"]
    if not findings:
        return "a chest x ray with no finding"
    return "a chest x ray with " + ", ".join(findings)

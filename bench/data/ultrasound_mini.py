"""busi-mini and ddti-mini: procedural breast and thyroid ultrasound with exact lesion masks (issue 21).

Mini twins of BUSI and DDTI (research/papers_meddiff_diffboost.md A.8, B.8; loaders in
`bench.data.ultrasound`). Each image is a B-mode frame of a linear probe, built as

* an echogenicity map of the organ's layers (breast: skin line, subcutaneous fat with Cooper's ligaments,
  streaky fibroglandular tissue, striated pectoral muscle, sometimes a rib with its shadow; thyroid: skin,
  strap muscles, the homogeneous thyroid lobe, the anechoic carotid artery, the tracheal ring with its
  reverberation shadow, deep neck muscles);
* a hypoechoic lesion with a class-specific outline: ``benign`` smooth, wider-than-tall ovals (gently
  lobulated), ``malignant`` irregular, spiculated, not parallel to the skin, with indistinct margins
  (thyroid: micro-calcifications); cystic benign lesions are near anechoic;
* posterior acoustic enhancement (benign, cystic) or shadowing (malignant) below the lesion, column by column;
* depth-dependent attenuation, multiplicative speckle (the magnitude of a spatially correlated complex
  Gaussian field: Rayleigh distributed, grain longer laterally than axially) and log-like compression.

``normal`` images have no lesion and an empty mask (BUSI's 133 normal images; MedDiff-FT's lesion-free
backgrounds). The mask is exact: the lesion's soft edge is > 0.5 exactly on it.

Each image belongs to a case (patient) in ``meta["case"]``: the images of a case are views of the same
lesion and tissue (shifted, rescaled and rotated a little, new speckle), and a case never straddles two
splits. ``meta["spacing"]`` is the (row, col) pixel spacing in mm at the delivered ``image_size``: the case's
field of view (depth x width, e.g. 40 x 48 mm; about 0.08-0.1 mm per pixel at BUSI's native ~500 px) divided
by the image side, so it scales with the image size (the frame is squashed to a square as the loaders do).

Determinism: a case is a function of ``(world_seed, split, case index)``, a view of ``(..., view index)``; a
larger split is a prefix-extension of a smaller one (except that its last case may gain views).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from bench.data.base import DataError, DatasetSource, LazySamples, checksum_ids
from bench.interface import Sample

CLASS_NAMES = ("benign", "malignant", "normal")  # the order of bench.data.ultrasound.BUSI
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: Split code of the samples `oracle_sample` draws: disjoint from train, val and test.
ORACLE_SPLIT_CODE = 3


@dataclass(frozen=True)
class Organ:
    """What differs between the breast and the thyroid world."""

    name: str
    code: int
    lesion_word: str
    benign_share: float
    """Share of benign among the lesion images."""
    normal_rate: float
    """Default share of lesion-free ``normal`` images."""
    fov_depth: tuple[float, float]
    fov_width: tuple[float, float]
    lesion_mm: tuple[float, float]
    """Range of the lesion's equivalent diameter in mm."""
    views: tuple[int, int]
    """Images per case (inclusive range)."""
    sizes: dict[str, int]


BREAST = Organ("breast", 11, "breast lesion", 437 / 647, 133 / 780, (30.0, 45.0), (38.0, 52.0), (7.0, 24.0), (1, 2),
               {"train": 300, "val": 60, "test": 120})
THYROID = Organ("thyroid", 12, "thyroid nodule", 0.5, 0.15, (28.0, 40.0), (36.0, 50.0), (6.0, 18.0), (1, 6),
                {"train": 300, "val": 60, "test": 120})


def _smooth(rng: np.random.Generator, size: int, sigma: float | tuple[float, float]) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="reflect")
    return field / (field.std() + 1e-8)


def _speckle(rng: np.random.Generator, size: int) -> np.ndarray:
    """Multiplicative speckle of mean 1: the magnitude of a correlated complex Gaussian field (Rayleigh)."""
    grain = max(size / 128.0, 0.45)
    sigma = (0.6 * grain, 1.3 * grain)  # axial (rows) finer than lateral
    re = gaussian_filter(rng.standard_normal((size, size)), sigma)
    im = gaussian_filter(rng.standard_normal((size, size)), sigma)
    magnitude = np.hypot(re, im)
    return magnitude / magnitude.mean()


def _case_class(crng: np.random.Generator, organ: Organ, normal_rate: float) -> int:
    if crng.random() < normal_rate:
        return CLASS_NAMES.index("normal")
    return 0 if crng.random() < organ.benign_share else 1


def _background(organ: Organ, crng: np.random.Generator, vrng: np.random.Generator, size: int, x: np.ndarray,
                y: np.ndarray, depth: float, width: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Echogenicity (0..1) of the tissue without lesion, and where the lesion may sit (mm)."""
    s = float(size)
    E = np.zeros((size, size))
    skin = crng.uniform(1.2, 2.2)
    shift = vrng.normal(0.0, 1.5)  # the probe moved a little between views
    xs = x + shift
    if organ.name == "breast":
        y1 = depth * crng.uniform(0.18, 0.32) + crng.uniform(1.0, 3.0) * np.sin(2 * math.pi * xs / width * crng.uniform(0.5, 1.5)
                                                                         + crng.uniform(0, 6.3))
        y2 = depth * crng.uniform(0.62, 0.8) + crng.uniform(1.0, 3.0) * np.sin(2 * math.pi * xs / width * crng.uniform(0.3, 1.0)
                                                                        + crng.uniform(0, 6.3))
        fat = 0.28 + 0.07 * _smooth(vrng, size, s / 14)
        gland = 0.6 + 0.12 * _smooth(vrng, size, (s / 60, s / 10))  # streaky: long laterally
        stripes = np.cos(2 * math.pi * (y + 0.15 * xs) / crng.uniform(1.8, 3.0))
        muscle = 0.38 + 0.1 * stripes + 0.04 * _smooth(vrng, size, s / 20)
        E = np.where(y < y1, fat, np.where(y < y2, gland, muscle))
        for _ in range(int(crng.integers(1, 4))):  # Cooper's ligaments: thin bright arcs through the fat
            c0, amp, f = crng.uniform(0, width), crng.uniform(2, 6), crng.uniform(0.5, 1.5)
            curve = skin + (y1 - skin) * (0.5 + 0.5 * np.sin((xs - c0) / width * math.pi * f))
            E += 0.3 * np.exp(-((y - curve) ** 2) / (2 * (0.25 + 0.02 * amp) ** 2)) * (y < y1)
        if crng.random() < 0.3:  # a rib at the bottom: bright curved surface, shadow below
            rx, ry, rr = crng.uniform(0.2, 0.8) * width, depth * crng.uniform(0.88, 0.95), crng.uniform(4, 7)
            top = ry - rr * np.sqrt(np.clip(1 - ((xs - rx) / (1.6 * rr)) ** 2, 0, 1))
            inside = np.abs(xs - rx) < 1.6 * rr
            E = np.where(inside & (np.abs(y - top) < 0.6), 0.95, np.where(inside & (y > top), E * 0.12, E))
        lesion_box = (depth * 0.2, depth * 0.7, width * 0.2, width * 0.8)
        meta = {"layers": "skin, fat, fibroglandular, muscle", "max_mm": depth * 0.8}
    else:
        y_sc = skin + crng.uniform(1.5, 3.0)
        y_m = y_sc + crng.uniform(3.0, 6.0) + 0.8 * np.sin(xs / width * 4)
        side = crng.choice([-1.0, 1.0])  # trachea medial on one side, carotid lateral on the other
        tx, ty = width * (0.5 + side * 0.15) + crng.normal(0, 1.5), depth * crng.uniform(0.4, 0.5)
        ta, tb = width * crng.uniform(0.3, 0.38), depth * crng.uniform(0.22, 0.3)
        strap = 0.25 + 0.06 * np.cos(2 * math.pi * y / 1.5)  # strap muscles, fibres parallel to the skin
        E = np.where(y < y_sc, 0.35 + 0.05 * _smooth(vrng, size, s / 16), np.where(y < y_m, strap, 0.4))
        thyroid = ((xs - tx) / ta) ** 2 + ((y - ty) / tb) ** 2 < 1.0
        E = np.where(thyroid, 0.62 + 0.06 * _smooth(vrng, size, s / 40), E)
        deep = (y > ty + tb * 0.9) & ~thyroid
        E = np.where(deep, 0.3 + 0.06 * _smooth(vrng, size, s / 12), E)
        cx, cy, cr = tx - side * (ta + crng.uniform(3, 5)), ty + crng.uniform(-2, 4), crng.uniform(3.0, 4.5)
        carotid = (xs - cx) ** 2 + (y - cy) ** 2 < cr ** 2
        below = (np.abs(xs - cx) < cr) & (y > cy)
        E = np.where(below, E * 1.35, E)  # enhancement behind the vessel
        E = np.where(carotid, 0.03, E)
        rx, ry, rr = tx + side * (ta + crng.uniform(3, 6)), ty - tb * 0.2, crng.uniform(5, 7)
        ring_top = ry - rr * np.sqrt(np.clip(1 - ((xs - rx) / rr) ** 2, 0, 1))
        inside = np.abs(xs - rx) < rr
        reverb = 0.1 * (np.cos(2 * math.pi * (y - ring_top) / 2.2) > 0.8) * np.exp(-(y - ring_top) / 8.0)
        E = np.where(inside & (y > ring_top + 0.7), 0.05 + reverb, E)
        E = np.where(inside & (np.abs(y - ring_top) <= 0.7), 0.95, E)
        lesion_box = (ty - tb * 0.35, ty + tb * 0.35, tx - ta * 0.5, tx + ta * 0.5)
        meta_max = 1.3 * tb  # a nodule stays (mostly) inside the lobe
        meta = {"layers": "skin, strap muscles, thyroid, carotid, trachea", "max_mm": meta_max}
    E = np.where(y < skin, 0.85, E)
    return np.clip(E, 0.0, 1.2), {**meta, "lesion_box": lesion_box}


def render(organ: Organ, world_seed: int, split_code: int, case: int, view: int, size: int = 64,
           normal_rate: float | None = None, label: int | None = None,
           shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render view ``view`` of case ``case``.

    ``label``: force the class (the world's class-conditional distribution); ``shape``: a (size, size) bool
    lesion mask to render instead of the drawn outline (empty = a normal image); both for ``world-oracle``.

    Returns:
        image (H, W) float32 in [0, 1], mask (H, W) bool, meta dict.
    """
    crng = np.random.default_rng([world_seed, split_code, case, organ.code])
    vrng = np.random.default_rng([world_seed, split_code, case, view, organ.code, 1])
    label_drawn = _case_class(crng, organ, organ.normal_rate if normal_rate is None else normal_rate)
    lesion_class = 0 if crng.random() < organ.benign_share else 1  # used when a lesion is asked of a normal case
    cls = label_drawn if label is None else int(label)
    if shape is not None:
        shape = np.asarray(shape, dtype=bool)
        if shape.shape != (size, size):
            raise ValueError(f"{organ.name} ultrasound: a lesion shape must be a ({size}, {size}) mask, got {shape.shape}")
        cls = CLASS_NAMES.index("normal") if not shape.any() else (cls if cls != 2 else lesion_class)
    malignant = cls == 1
    depth = crng.uniform(*organ.fov_depth)
    width = crng.uniform(*organ.fov_width)
    s = float(size)
    rows = (np.arange(size) + 0.5) / s
    y = np.repeat(rows[:, None] * depth, size, axis=1)
    x = np.repeat(rows[None, :] * width, size, axis=0)
    E, bg = _background(organ, crng, vrng, size, x, y, depth, width)

    # Lesion (drawn for every case so that the streams do not depend on the class).
    d_mm = min(crng.uniform(*organ.lesion_mm), bg["max_mm"])
    y0, y1, x0, x1 = bg["lesion_box"]
    cy, cx = crng.uniform(y0, y1), crng.uniform(x0, x1)
    if malignant:
        aspect = crng.uniform(0.75, 1.3)  # width / height: often not parallel to the skin
        theta = crng.normal(0, 0.5)
        orders, amps = range(2, 7), crng.uniform(0.1, 0.22)
        spikes = crng.uniform(0.04, 0.1)
        soft = crng.uniform(0.4, 0.9)
        level = crng.uniform(0.08, 0.3)  # echo level relative to the surrounding tissue
        posterior = crng.uniform(-0.85, -0.5)  # shadow
    else:
        aspect = crng.uniform(1.3, 2.0)
        theta = crng.normal(0, 0.15)
        orders, amps = range(2, 4), crng.uniform(0.02, 0.07)
        spikes = 0.0
        soft = crng.uniform(0.15, 0.35)
        cystic = crng.random() < 0.35
        level = crng.uniform(0.02, 0.08) if cystic else crng.uniform(0.2, 0.45)
        if organ.name == "thyroid" and not cystic:
            level = crng.uniform(0.35, 0.6)  # benign thyroid nodules: iso- to mildly hypoechoic, with a dark halo
        posterior = crng.uniform(0.5, 1.0) if cystic else crng.uniform(0.0, 0.4)
    coeffs = [(amps / k ** 0.6 * crng.normal(), crng.uniform(0, 2 * math.pi)) for k in orders]
    spike_k = [(int(k), crng.uniform(0, 2 * math.pi), crng.uniform(0.5, 1.0)) for k in crng.integers(7, 15, size=4)]
    texture_amp = crng.uniform(0.02, 0.06) * (2.0 if malignant else 1.0)
    halo = crng.uniform(0.1, 0.25) if malignant and organ.name == "breast" else \
        -crng.uniform(0.4, 0.6) if (not malignant and organ.name == "thyroid") else 0.0
    n_calc = int(crng.integers(3, 10)) if malignant and organ.name == "thyroid" else 0
    # view-specific pose of the lesion
    cy += vrng.normal(0, 0.03 * depth)
    cx += vrng.normal(0, 0.04 * width)
    scale = vrng.uniform(0.9, 1.1)
    theta += vrng.normal(0, 0.1)
    r0 = 0.5 * d_mm * scale

    mask = np.zeros((size, size), dtype=bool)
    alpha = np.zeros((size, size))
    if cls != 2:
        if shape is not None:
            mask = shape
            pix = math.sqrt(depth * width) / s
            inside, outside = distance_transform_edt(mask), distance_transform_edt(~mask)
            alpha = 1.0 / (1.0 + np.exp(-(inside - outside) * pix / soft))
            rr, cc = np.nonzero(mask)
            cy, cx = (rr.mean() + 0.5) / s * depth, (cc.mean() + 0.5) / s * width
            r0 = math.sqrt(mask.sum() * (depth / s) * (width / s) / math.pi)
        else:
            dx, dy = x - cx, y - cy
            u = (dx * math.cos(theta) + dy * math.sin(theta)) / math.sqrt(aspect)
            v = (-dx * math.sin(theta) + dy * math.cos(theta)) * math.sqrt(aspect)
            rho, phi = np.hypot(u, v), np.arctan2(v, u)
            radius = np.ones_like(phi)
            for k, (a, p) in zip(orders, coeffs):
                radius += a * np.cos(k * phi + p)
            for k, p, w in spike_k:
                radius += spikes * w * np.maximum(np.cos(k * phi + p), 0.0) ** 4
            radius = r0 * np.clip(radius, 0.5, None)
            alpha = 1.0 / (1.0 + np.exp(-(radius - rho) / soft))
            mask = alpha > 0.5
            if mask.sum() < 3:  # too small to see at this size: a disc of a few pixels
                alpha = (np.hypot((x - cx) / (width / s), (y - cy) / (depth / s)) < 1.6).astype(float)
                mask = alpha > 0.5
        inner = level * float(E[mask].mean()) + texture_amp * _smooth(vrng, size, s / 24)
        for _ in range(n_calc):  # micro-calcifications: bright dots inside the nodule
            ry, rx = np.nonzero(mask)
            if len(ry) == 0:
                break
            j = int(vrng.integers(len(ry)))
            inner[ry[j], rx[j]] = 0.95
        if halo:
            ring = np.exp(-((distance_transform_edt(~mask) * math.sqrt(depth * width) / s - 0.5) ** 2) / 0.15) * ~mask
            E = E * (1 + halo * ring)
        E = alpha * inner + (1 - alpha) * E
        # posterior enhancement (> 0) or shadow (< 0), column by column below the lesion
        cover = mask.sum(axis=0).astype(float)
        if cover.max() > 0:
            weight = gaussian_filter(cover / cover.max(), max(0.6, s / 96))
            bottom = np.where(mask.any(axis=0), size - 1 - np.argmax(mask[::-1], axis=0), size)
            below = np.arange(size)[:, None] - bottom[None, :]
            ramp = np.clip(below / max(1.0, s / 40), 0, 1) * np.exp(-np.clip(below, 0, None) / (1.5 * s))
            E = E * (1 + posterior * weight[None, :] * ramp)
    # attenuation with depth (after time-gain compensation), near-field brightening
    att = crng.uniform(0.25, 0.5)
    E = E * (1 - att * y / depth) * (1 + 0.25 * np.exp(-y / 1.5))
    intensity = np.clip(E, 0, None) * _speckle(vrng, size)
    gamma = crng.uniform(0.5, 0.65)
    image = np.clip(crng.uniform(0.85, 1.05) * intensity ** gamma + 0.01 * vrng.standard_normal((size, size)), 0, 1)
    markers = crng.random() < 0.5 and size >= 32
    if markers:  # depth scale dots every 10 mm at the right edge
        for mm in np.arange(10.0, depth, 10.0):
            image[min(size - 1, int(mm / depth * s)), size - 2] = 0.9
    spacing = (float(depth / s), float(width / s))
    name = CLASS_NAMES[cls]
    meta = {
        "class_name": name,
        "label": cls,
        "organ": organ.name,
        "spacing": spacing,
        "fov_mm": (float(depth), float(width)),
        "area_ratio": float(mask.mean()),
        "lesion_mm": float(2 * r0) if cls != 2 else 0.0,
        "posterior": "none" if cls == 2 or abs(posterior) < 0.15 else ("shadowing" if posterior < 0 else "enhancement"),
        "depth_markers": bool(markers),
    }
    return image.astype(np.float32), mask, meta


@lru_cache(maxsize=4096)
def _render_cached(organ_name: str, world_seed: int, split_code: int, case: int, view: int, size: int,
                   normal_rate: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    image, mask, meta = render(ORGANS[organ_name], world_seed, split_code, case, view, size, normal_rate)
    image.setflags(write=False)
    mask.setflags(write=False)
    return image, mask, meta


ORGANS = {"breast": BREAST, "thyroid": THYROID}


def caption(meta: dict[str, Any]) -> str:
    """``an ultrasound image of a benign breast lesion`` / ``... of normal thyroid tissue``."""
    organ = ORGANS[meta["organ"]]
    if meta["class_name"] == "normal":
        return f"an ultrasound image of normal {organ.name} tissue"
    return f"an ultrasound image of a {meta['class_name']} {organ.lesion_word}"


def _to_image(image: np.ndarray, channels: int) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))[None]
    return tensor.repeat(channels, 1, 1).contiguous()


def oracle_sample(world: dict[str, Any], key: int, size: int, label: int | None = None,
                  shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A fresh image of the world ``world`` (`UltrasoundMini.world_spec`), never one of its splits: the first view
    of case ``key`` of the oracle stream, of class ``label`` and with lesion ``shape`` when given.

    Returns:
        image (H, W, C) float32, mask (H, W) bool, meta (with ``label`` and ``class_name``).
    """
    organ = ORGANS[world["organ"]]
    if label is not None and not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(f"{world['dataset']}: class index {label} out of range 0..{len(CLASS_NAMES) - 1}")
    image, mask, meta = render(organ, int(world["world_seed"]), ORACLE_SPLIT_CODE, int(key) % (2 ** 62), 0, size,
                               float(world["normal_rate"]), label, shape)
    channels = int(world.get("channels", 3))
    return np.repeat(image[..., None], channels, axis=2), mask, meta


class UltrasoundMini(DatasetSource):
    """Procedural ultrasound image-mask pairs of one organ, in cases (see module doc).

    Options:
        sizes: images per split (default ``{"train": 300, "val": 60, "test": 120}``).
        world_seed: seed of the world (not of the run).
        normal_rate: share of lesion-free ``normal`` cases (default: BUSI's 133/780; ddti-mini 0.15).
        channels: 3 (default, the real loaders' grey-as-RGB) or 1.
    """

    organ: ClassVar[Organ] = BREAST
    prefix: ClassVar[str] = ""
    fields = frozenset({"image", "mask", "label", "prompt"})
    class_names = CLASS_NAMES
    needs_root = False

    def __init__(self, root: Path | None = None, image_size: int | None = 64, sizes: dict[str, int] | None = None,
                 world_seed: int = 2020, normal_rate: float | None = None, channels: int = 3, **options: Any) -> None:
        if options:
            raise DataError(f"{self.id}: unknown option(s) {', '.join(sorted(options))}; "
                            "valid: sizes, world_seed, normal_rate, channels")
        super().__init__(root, image_size or 64)
        self.sizes = {**self.organ.sizes, **(sizes or {})}
        for split, n in self.sizes.items():
            if split not in SPLIT_CODES:
                raise DataError(f"{self.id}: unknown split '{split}' in sizes; splits: train, val, test")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise DataError(f"{self.id}: size of split '{split}' must be a non-negative integer, got {n!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 16:
            raise DataError(f"{self.id}: image_size must be an integer >= 16, got {self.image_size!r}")
        rate = self.organ.normal_rate if normal_rate is None else normal_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise DataError(f"{self.id}: normal_rate must be a number in [0, 1], got {normal_rate!r}")
        if channels not in (1, 3):
            raise DataError(f"{self.id}: channels must be 1 or 3, got {channels!r}")
        self.world_seed, self.normal_rate, self.channels = int(world_seed), float(rate), int(channels)
        self._layout: dict[str, list[tuple[int, int]]] = {}

    def world_spec(self) -> dict[str, Any]:
        """What `oracle_sample` needs (in every sample's ``meta["world"]``)."""
        return {"dataset": self.id, "organ": self.organ.name, "world_seed": self.world_seed,
                "normal_rate": self.normal_rate, "channels": self.channels}

    def layout(self, split: str) -> list[tuple[int, int]]:
        """(case, view) of each image of ``split``, in order."""
        self._check_split(split)
        if split not in self._layout:
            code, n, out, case = SPLIT_CODES[split], self.sizes[split], [], 0
            low, high = self.organ.views
            while len(out) < n:
                views = int(np.random.default_rng([self.world_seed, code, case, self.organ.code, 7]).integers(low, high + 1))
                out.extend((case, v) for v in range(views))
                case += 1
            self._layout[split] = out[:n]
        return self._layout[split]

    def case_id(self, split: str, case: int) -> str:
        return f"{self.prefix}-{self.world_seed}-{split}-c{case:04d}"

    def split_ids(self, split: str) -> list[str]:
        return [f"{self.case_id(split, c)}-v{v}" for c, v in self.layout(split)]

    def sample_cases(self, split: str) -> list[str | None]:
        return [self.case_id(split, c) for c, _ in self.layout(split)]

    def split_checksum(self, split: str) -> str:
        tags = [f"image_size={self.image_size}", f"generator={self.id}/1", f"normal_rate={self.normal_rate!r}",
                f"channels={self.channels}"]
        return checksum_ids([*self.split_ids(split), *tags])

    def load(self, split: str) -> LazySamples:
        code = SPLIT_CODES[split]
        world = self.world_spec()
        layout = self.layout(split)

        def load_one(index: int, sample_id: str) -> Sample:
            case, view = layout[index]
            image, mask, meta = _render_cached(self.organ.name, self.world_seed, code, case, view, self.image_size,
                                               self.normal_rate)
            return Sample(image=_to_image(image, self.channels), mask=torch.from_numpy(mask.copy()),
                          label=meta["label"], prompt=caption(meta),
                          meta={"id": sample_id, "split": split, "index": index, "case": self.case_id(split, case),
                                "view": view, **meta, "world": world})

        return LazySamples(self.split_ids(split), load_one)


class BusiMini(UltrasoundMini):
    """busi-mini: breast ultrasound (BUSI's twin): benign, malignant and lesion-free normal images, 1-2 per case."""

    id: ClassVar[str] = "busi-mini"
    organ = BREAST
    prefix = "bm"


class DdtiMini(UltrasoundMini):
    """ddti-mini: thyroid ultrasound (DDTI's twin): nodules (benign- or malignant-looking), 1-6 images per case,
    and lesion-free normal images (``normal_rate`` 0.15; the real pre-processed DDTI has none: 0 for a strict twin)."""

    id: ClassVar[str] = "ddti-mini"
    organ = THYROID
    prefix = "tm"


__all__ = ["BusiMini", "DdtiMini", "UltrasoundMini", "caption", "oracle_sample", "render"]

"""derm-mini: procedural dermoscopy-like images with exact lesion masks.

The embedded default dataset. Every sample is generated on demand from
``(world_seed, split, index)``, so the world is identical on every machine,
never stored in the repository, and a larger split is a prefix-extension of a
smaller one.

What is controlled, per sample (all recorded in ``meta``):

* skin colour in CIELAB (L*, a*, b*), hence its ITA (Individual Typology Angle);
* a lesion class among the seven HAM10000 classes, drawn with HAM10000's
  imbalance (NV 66.9 %), with class-specific size, border irregularity, colour
  and texture (pigment network, globules, blue-white veil, lacunae ...);
* the lesion-skin contrast: a target ITA difference (ITA skin - ITA lesion)
  drawn so that about 22 % of samples fall below 30 degrees, as in ISIC 2018
  Task 1 (569 of 2594, thesis chapter 5). The lesion's region-mean L*, b* are
  set exactly to the values giving that ITA, so ``meta["low_contrast"]`` is the
  ground truth of chapter 5's low-contrast subset;
* artefacts: hair strands, dermatoscope vignette, ruler ticks.

Difficulty (``difficulty`` option, `Difficulty`): lesion border fuzziness, the low-contrast share, how far the
high-contrast lesions stand out, artefact density, skin and lesion texture, off-lesion look-alike spots (naevi,
freckles: lesion-coloured, outside the mask) and sensor noise. The default world (``difficulty: default``) is
the original one, byte for byte: every knob at its default leaves each random draw and each value unchanged, and
the extra features draw from a second stream only when switched on. ``difficulty: calibrated`` is the preset
whose S_1k twin real-only U-Net IoU lands at the thesis's operating point (benchmarks/derm_mini_calibration.py).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter
from skimage.color import lab2rgb

from bench.data.base import DataError, DatasetSource, LazySamples
from bench.interface import Sample

CLASS_NAMES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
#: ISIC 2018 Task 3 / HAM10000 training class counts (research/ch4_didgen.md section 7.2).
HAM_COUNTS = (1113, 6705, 514, 327, 1099, 115, 142)
CLASS_PRIOR = np.array(HAM_COUNTS, dtype=float) / sum(HAM_COUNTS)

DEFAULT_SIZES = {"train": 1000, "val": 100, "test": 300}
LOW_CONTRAST_THRESHOLD = 30.0  # degrees of ITA difference (thesis chapter 5, section 5.2)
LOW_CONTRAST_RATE = 569 / 2594


@dataclass(frozen=True)
class Difficulty:
    """Knobs of derm-mini's difficulty. Every default reproduces the original world exactly."""

    border: float = 1.0
    """Multiplier of the lesion border's softness (logistic edge width, 0.4-1.2 px at 64 px by default)."""
    low_contrast_rate: float = LOW_CONTRAST_RATE
    """Share of lesions drawn below 30 degrees of ITA difference (ISIC 2018 Task 1: 569/2594)."""
    high_contrast_max: float = 75.0
    """Upper end of the ITA difference drawn for the other lesions (from 32 degrees)."""
    artefacts: float = 1.0
    """Multiplier of the hair (0.30), vignette (0.30) and ruler (0.10) probabilities (capped at 1)."""
    skin_texture: float = 1.0
    """Multiplier of the skin's low-frequency colour variation (1.5 L*, 1.0 a*, b*)."""
    texture: float = 1.0
    """Multiplier of the lesion's own low-frequency colour variation (3.0 L*, 1.5 a*, b*)."""
    distractors: float = 0.0
    """Mean (Poisson) number of lesion-coloured spots outside the lesion, not in its mask."""
    noise: float = 0.0
    """Standard deviation of per-pixel sensor noise, in L* units."""

    def is_default(self) -> bool:
        return self == Difficulty()

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def level(cls, t: float) -> Difficulty:
        """One scalar path from the default world (t = 0) to a hard one (t = 1), every knob moved together; the
        calibration searches along it (benchmarks/derm_mini_calibration.py)."""
        t = float(t)
        if not 0.0 <= t <= 2.0:
            raise DataError(f"derm-mini: difficulty level must be in [0, 2], got {t}")
        d = cls()
        return cls(border=1.0 + 4.0 * t, low_contrast_rate=d.low_contrast_rate + (0.6 - d.low_contrast_rate) * min(t, 1.0),
                   high_contrast_max=75.0 - 30.0 * min(t, 1.0), artefacts=1.0 + 1.5 * t, skin_texture=1.0 + 3.0 * t,
                   texture=1.0 + 2.0 * t, distractors=3.0 * t, noise=4.0 * t)

    @classmethod
    def parse(cls, value: Any) -> Difficulty:
        """A preset name, ``{"level": t}``, or a mapping of knobs (a ``preset`` key starts from that preset)."""
        if value is None or isinstance(value, Difficulty):
            return value or cls()
        if isinstance(value, str):
            if value not in DIFFICULTY_PRESETS:
                raise DataError(f"derm-mini: unknown difficulty preset '{value}'; presets: {', '.join(DIFFICULTY_PRESETS)}")
            return DIFFICULTY_PRESETS[value]
        if not isinstance(value, dict):
            raise DataError(f"derm-mini: difficulty must be a preset name or a mapping of knobs, got {value!r}")
        value = dict(value)
        base = cls.parse(value.pop("preset", "default"))
        if "level" in value:
            base = cls.level(value.pop("level"))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise DataError(f"derm-mini: unknown difficulty knob(s) {', '.join(unknown)}; valid: level, preset, "
                            f"{', '.join(sorted(names))}")
        for name, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise DataError(f"derm-mini: difficulty.{name} must be a non-negative number, got {v!r}")
        if value.get("low_contrast_rate", 0) > 1:
            raise DataError(f"derm-mini: difficulty.low_contrast_rate must be in [0, 1], got {value['low_contrast_rate']}")
        if value.get("high_contrast_max", 75.0) <= 32.0:
            raise DataError(f"derm-mini: difficulty.high_contrast_max must exceed 32, got {value['high_contrast_max']}")
        return replace(base, **{k: float(v) for k, v in value.items()})


class _ClassStyle:
    """Per-class priors: lesion size, border irregularity and appearance."""

    def __init__(self, area: tuple[float, float], irregularity: float, elongation: float,
                 b_star: tuple[float, float], a_star: tuple[float, float], texture: str, colour: str) -> None:
        self.area, self.irregularity, self.elongation = area, irregularity, elongation
        self.b_star, self.a_star, self.texture, self.colour = b_star, a_star, texture, colour


CLASS_STYLES = {
    "MEL": _ClassStyle((0.10, 0.40), 0.22, 0.30, (10, 24), (8, 18), "veil", "dark brown"),
    "NV": _ClassStyle((0.06, 0.28), 0.06, 0.15, (16, 30), (8, 16), "network", "brown"),
    "BCC": _ClassStyle((0.06, 0.25), 0.16, 0.25, (4, 14), (12, 22), "globules", "pink"),
    "AKIEC": _ClassStyle((0.06, 0.25), 0.14, 0.25, (8, 18), (14, 24), "scale", "red"),
    "BKL": _ClassStyle((0.08, 0.32), 0.12, 0.30, (14, 28), (6, 14), "cerebriform", "light brown"),
    "DF": _ClassStyle((0.04, 0.14), 0.05, 0.10, (12, 24), (8, 16), "central-white", "brown"),
    "VASC": _ClassStyle((0.04, 0.16), 0.08, 0.20, (2, 10), (24, 40), "lacunae", "red"),
}


def _skin_tone_word(ita: float) -> str:
    return "very light" if ita > 55 else "light" if ita > 41 else "intermediate" if ita > 28 else \
        "tan" if ita > 19 else "brown" if ita > 10 else "dark"


def _ita(L: float, b: float) -> float:
    return math.degrees(math.atan((L - 50.0) / b))


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def render(world_seed: int, split_code: int, index: int, size: int = 64,
           difficulty: Difficulty | None = None, shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one sample (``difficulty``: None or the default, the original world).

    ``shape``: a (size, size) bool lesion mask to render instead of the drawn outline (the world's generator
    conditioned on a mask, for ``world-oracle``); every other draw is the same, the lesion's centre and size follow
    the given mask, its soft edge the drawn softness.

    Returns:
        image (H, W, 3) float32 in [0, 1], mask (H, W) bool, meta dict.
    """
    rng = np.random.default_rng([world_seed, split_code, index])
    d = difficulty or DEFAULT_DIFFICULTY
    hard = not d.is_default()
    # The extra features draw from their own stream, so the original stream (and world) stays as it was.
    extra = np.random.default_rng([world_seed, split_code, index, 1]) if hard else None
    label = int(rng.choice(len(CLASS_NAMES), p=CLASS_PRIOR))
    name = CLASS_NAMES[label]
    style = CLASS_STYLES[name]
    s = float(size)

    # 1. Skin colour (CIELAB), skewed to light skin as in ISIC.
    skin_L = 40.0 + 45.0 * rng.beta(3.0, 1.6)
    skin_a = rng.uniform(6, 18)
    skin_b = rng.uniform(10, 26)
    ita_skin = _ita(skin_L, skin_b)

    # 2. Target contrast, then the lesion's mean L*, b* that realise it exactly.
    low = rng.random() < d.low_contrast_rate
    target_diff = rng.uniform(-12.0, 28.0) if low else rng.uniform(32.0, d.high_contrast_max)
    les_b = rng.uniform(*style.b_star)
    les_a = rng.uniform(*style.a_star)
    ita_les = ita_skin - target_diff
    les_L = float(np.clip(50.0 + les_b * math.tan(math.radians(ita_les)), 8.0, 95.0))
    ita_les = _ita(les_L, les_b)  # after clipping to the gamut
    ita_diff = ita_skin - ita_les

    # 3. Shape: a star-shaped blob with a random low-order Fourier radius.
    area = rng.uniform(*style.area)
    r0 = math.sqrt(area * s * s / math.pi)
    cx, cy = s / 2 + rng.normal(0, s * 0.06, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    theta0 = rng.uniform(0, math.pi)
    stretch = 1.0 + rng.uniform(0, style.elongation)
    dx, dy = xx - cx, yy - cy
    u = (dx * math.cos(theta0) + dy * math.sin(theta0)) / math.sqrt(stretch)
    v = (-dx * math.sin(theta0) + dy * math.cos(theta0)) * math.sqrt(stretch)
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    radius = np.ones_like(phi)
    for k in range(2, 7):
        radius += style.irregularity / k ** 0.7 * rng.normal() * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    radius = r0 * np.clip(radius, 0.45, None)
    softness = rng.uniform(0.4, 1.2) * s / 64.0 * d.border
    alpha = 1.0 / (1.0 + np.exp(-(radius - rho) / softness))
    mask = alpha > 0.5
    if shape is None and mask.sum() < 4:  # degenerate draw: fall back to a small disc
        alpha = (rho < max(r0, 2.0)).astype(np.float64)
        mask = alpha > 0.5
    if shape is not None:
        mask = np.asarray(shape, dtype=bool)
        if mask.shape != (size, size) or not mask.any():
            raise ValueError(f"derm-mini: a lesion shape must be a non-empty ({size}, {size}) mask, got "
                             f"{mask.shape} with {int(mask.sum())} pixels")
        inside, outside = distance_transform_edt(mask), distance_transform_edt(~mask)
        alpha = 1.0 / (1.0 + np.exp(-(inside - outside) / softness))  # > 0.5 exactly on the mask
        cy, cx = (float(v.mean()) + 0.5 for v in np.nonzero(mask))
        area = float(mask.mean())
        r0 = math.sqrt(area * s * s / math.pi)
        rho = np.hypot(xx - cx, yy - cy)
        radius = rho + np.where(mask, inside, -outside)  # distance from the centre to the edge, along the ray

    # 4. Lesion texture, then exact re-centring of its region means.
    L = np.full((size, size), les_L)
    A = np.full((size, size), les_a)
    B = np.full((size, size), les_b)
    L += 3.0 * d.texture * _smooth_noise(rng, size, s / 16)
    A += 1.5 * d.texture * _smooth_noise(rng, size, s / 16)
    B += 1.5 * d.texture * _smooth_noise(rng, size, s / 16)
    centre_fall = np.clip(rho / (radius + 1e-6), 0, 1)
    if style.texture == "network":
        period = s / rng.uniform(7, 11)
        grid = np.cos(2 * math.pi * u / period) * np.cos(2 * math.pi * v / period)
        L -= 4.0 * (grid > 0.3)
    elif style.texture == "veil":
        veil = _smooth_noise(rng, size, s / 12) > 0.4
        L -= 6.0 * veil
        B -= 14.0 * veil
        A -= 4.0 * veil
        L += 5.0 * (_smooth_noise(rng, size, s / 20) > 1.0)
    elif style.texture in ("globules", "lacunae"):
        n = rng.integers(4, 10)
        for _ in range(n):
            gx, gy = rng.normal(cx, r0 * 0.5), rng.normal(cy, r0 * 0.5)
            blob = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (s / 40) ** 2))
            if style.texture == "globules":
                L -= 8.0 * blob
                B -= 10.0 * blob
            else:
                A += 10.0 * blob
                L -= 6.0 * blob
    elif style.texture == "scale":
        L += 6.0 * (_smooth_noise(rng, size, s / 32) > 0.8)
    elif style.texture == "cerebriform":
        L += 3.5 * np.sin(2 * math.pi * (u + 0.5 * v) / (s / 6))
    elif style.texture == "central-white":
        L += 12.0 * np.exp(-(centre_fall ** 2) / 0.08)
        B -= 4.0 * np.exp(-(centre_fall ** 2) / 0.08)
    L += 3.0 * (centre_fall - 0.5) * rng.choice([-1.0, 1.0])  # darker or lighter centre
    region = mask
    L += les_L - L[region].mean()
    B += les_b - B[region].mean()
    A += les_a - A[region].mean()

    # 5. Skin with mild low-frequency variation, then composite.
    skin = np.stack([
        skin_L + 1.5 * d.skin_texture * _smooth_noise(rng, size, s / 10),
        skin_a + 1.0 * d.skin_texture * _smooth_noise(rng, size, s / 10),
        skin_b + 1.0 * d.skin_texture * _smooth_noise(rng, size, s / 10),
    ], axis=-1)
    skin[..., 0] += skin_L - skin[..., 0][~mask].mean() if (~mask).any() else 0.0
    skin[..., 2] += skin_b - skin[..., 2][~mask].mean() if (~mask).any() else 0.0
    lesion = np.stack([L, A, B], axis=-1)
    lab = alpha[..., None] * lesion + (1 - alpha[..., None]) * skin
    n_spots = 0
    if extra is not None and d.distractors > 0:
        n_spots = _add_distractors(extra, lab, alpha, (les_L, les_a, les_b), r0, xx, yy, d)

    # 6. Artefacts.
    meta_art = {"hair": False, "vignette": False, "ruler": False}
    if rng.random() < min(1.0, 0.30 * d.artefacts):
        meta_art["hair"] = True
        darkness = np.zeros((size, size))
        for _ in range(int(rng.integers(1, 5))):
            p = rng.uniform(-0.1 * s, 1.1 * s, size=(3, 2))
            t = np.linspace(0, 1, 4 * size)[:, None]
            curve = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
            ij = np.round(curve).astype(int)
            ok = (ij >= 0).all(1) & (ij < size).all(1)
            darkness[ij[ok, 1], ij[ok, 0]] = 1.0
        darkness = np.clip(gaussian_filter(darkness, 0.5) * 2.5, 0, 1)
        lab[..., 0] = lab[..., 0] * (1 - 0.75 * darkness) + 12.0 * 0.75 * darkness
        lab[..., 1:] *= (1 - 0.6 * darkness[..., None])
    if rng.random() < min(1.0, 0.30 * d.artefacts):
        meta_art["vignette"] = True
        rr = np.hypot(xx - s / 2, yy - s / 2) / (s / 2)
        fall = np.clip((rr - rng.uniform(1.0, 1.25)) / 0.15, 0, 1)
        lab[..., 0] *= 1 - 0.9 * fall
        lab[..., 1:] *= (1 - fall[..., None])
    if rng.random() < min(1.0, 0.10 * d.artefacts):
        meta_art["ruler"] = True
        row = int(rng.integers(1, max(2, size // 16)))
        for x in range(int(rng.integers(0, 4)), size, max(3, size // 16)):
            lab[row:row + max(2, size // 20), x, 0] = 15.0
    if extra is not None and d.noise > 0:
        lab[..., 0] += d.noise * extra.standard_normal((size, size))
        lab[..., 1:] += 0.5 * d.noise * extra.standard_normal((size, size, 2))
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    with warnings.catch_warnings():  # out-of-gamut Lab values are clipped on purpose
        warnings.simplefilter("ignore", UserWarning)
        rgb = np.clip(lab2rgb(lab), 0, 1).astype(np.float32)

    ys, xs = np.nonzero(mask)
    vert = "upper" if ys.mean() < s * 0.4 else "lower" if ys.mean() > s * 0.6 else "central"
    horiz = "left" if xs.mean() < s * 0.4 else "right" if xs.mean() > s * 0.6 else ""
    meta = {
        "class_name": name,
        "label": label,
        "ita_skin": ita_skin,
        "ita_lesion": ita_les,
        "ita_diff": ita_diff,
        "low_contrast": bool(ita_diff < LOW_CONTRAST_THRESHOLD),
        "skin_lab": [skin_L, skin_a, skin_b],
        "lesion_lab": [les_L, les_a, les_b],
        "area_ratio": float(mask.mean()),
        "irregularity": style.irregularity,
        **meta_art,
        "attributes": {
            "size": "small" if area < 0.1 else "large" if area > 0.25 else "medium",
            "border": "irregular" if style.irregularity > 0.12 else "regular",
            "colour": style.colour,
            "texture": style.texture,
            "location": f"{vert} {horiz}".strip() if (vert, horiz) != ("central", "") else "central",
            "skin_tone": _skin_tone_word(ita_skin),
        },
    }
    if hard:
        meta["distractors"] = n_spots
    return rgb, mask, meta


def draw_label(world_seed: int, split_code: int, index: int) -> int:
    """The class of sample ``index`` without rendering it: `render`'s first draw."""
    return int(np.random.default_rng([world_seed, split_code, index]).choice(len(CLASS_NAMES), p=CLASS_PRIOR))


#: Split code of the samples `oracle_sample` draws: disjoint from train, val and test (0, 1, 2).
ORACLE_SPLIT_CODE = 3


def oracle_sample(world: dict[str, Any], key: int, size: int, label: int | None = None,
                  shape: np.ndarray | None = None, low_contrast: bool | None = None,
                  max_draws: int = 100_000) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A fresh sample of the world described by ``world`` (`DermMini.world_spec`), never one of its splits:
    the ``key``-th draw of the oracle stream, of class ``label`` and, when ``low_contrast`` is given, of that
    contrast class (``meta["low_contrast"]``: lesion-skin ITA difference below 30 degrees) (the first draw from ``key``
    on that matches: the world's conditional distribution), with lesion ``shape`` when given."""
    difficulty = Difficulty.parse(world.get("difficulty"))
    hard = None if difficulty.is_default() else difficulty
    seed = int(world["world_seed"])
    if label is not None and not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(f"derm-mini: class index {label} out of range 0..{len(CLASS_NAMES) - 1}")
    if label is None and low_contrast is None:
        return render(seed, ORACLE_SPLIT_CODE, int(key), size, hard, shape)
    for draw in range(max_draws):
        index = int(key) * max_draws + draw
        if label is not None and draw_label(seed, ORACLE_SPLIT_CODE, index) != int(label):
            continue
        out = render(seed, ORACLE_SPLIT_CODE, index, size, hard, shape)
        if low_contrast is None or out[2]["low_contrast"] == bool(low_contrast):
            return out
    wanted = ", ".join(x for x in (label is not None and f"class {CLASS_NAMES[int(label)]}",
                                   low_contrast is not None and f"low_contrast={bool(low_contrast)}") if x)
    raise ValueError(f"derm-mini: no sample of {wanted} in {max_draws} draws")


def _add_distractors(rng: np.random.Generator, lab: np.ndarray, alpha: np.ndarray, colour: tuple[float, float, float],
                     r0: float, xx: np.ndarray, yy: np.ndarray, d: Difficulty) -> int:
    """Paint lesion-coloured soft spots (naevi, freckles) on the skin around the lesion, in place; they stay out of
    the lesion (and so out of its mask). Returns how many were painted."""
    size = lab.shape[0]
    s = float(size)
    near = gaussian_filter(alpha, s / 32) > 0.05  # the lesion and a thin rim around it
    painted = 0
    for _ in range(int(rng.poisson(d.distractors))):
        radius = max(1.0, r0 * rng.uniform(0.15, 0.45))
        gx, gy = rng.uniform(0, s, size=2)
        spot = 1.0 / (1.0 + np.exp(-(radius - np.hypot(xx - gx, yy - gy)) / max(0.4, 0.6 * d.border * s / 64.0)))
        spot *= ~near
        if spot.max() < 0.5:
            continue
        shade = np.array([colour[0] + rng.normal(0, 6.0), colour[1] + rng.normal(0, 2.0), colour[2] + rng.normal(0, 3.0)])
        strength = rng.uniform(0.5, 1.0)
        lab[...] = lab * (1 - strength * spot[..., None]) + strength * spot[..., None] * shade
        painted += 1
    return painted


SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

DEFAULT_DIFFICULTY = Difficulty()
#: Named presets. "calibrated": the S_1k twin's real-only U-Net IoU at the thesis's 0.716 (Table 4.5), found by
#: benchmarks/derm_mini_calibration.py on real-only runs only (its output table: benchmarks/derm_mini_calibration.md).
DIFFICULTY_PRESETS: dict[str, Difficulty] = {
    "default": DEFAULT_DIFFICULTY,
    # level 0.465: the secant between the bracketing calibration runs (0.4: IoU 0.7415, 0.485: 0.7076; seed 0)
    "calibrated": Difficulty.level(0.465),
}


@lru_cache(maxsize=8192)
def _render_cached(world_seed: int, split_code: int, index: int, size: int,
                   difficulty: Difficulty | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    image, mask, meta = render(world_seed, split_code, index, size, difficulty)
    image.setflags(write=False)
    mask.setflags(write=False)
    return image, mask, meta


class DermMini(DatasetSource):
    """Procedural dermoscopy-like image-mask pairs with class labels (see module doc).

    Options:
        sizes: samples per split, default ``{"train": 1000, "val": 100, "test": 300}``.
        world_seed: seed of the world (not of the run): the same for every run.
        difficulty: a preset name ("default", "calibrated"), ``{"level": t}`` or a mapping of `Difficulty` knobs
            (optionally with ``preset:``); default: the original world.
    """

    id: ClassVar[str] = "derm-mini"
    fields = frozenset({"image", "mask", "label", "prompt"})
    class_names = CLASS_NAMES
    needs_root = False

    default_sizes: ClassVar[dict[str, int]] = DEFAULT_SIZES
    default_world_seed: ClassVar[int] = 2018

    def __init__(self, root: Path | None = None, image_size: int | None = 64, sizes: dict[str, int] | None = None,
                 world_seed: int | None = None, difficulty: Any = None, **options: Any) -> None:
        if options:
            raise DataError(f"{self.id}: unknown option(s) {', '.join(sorted(options))}; "
                            "valid: sizes, world_seed, difficulty")
        super().__init__(root, image_size or 64)
        self.sizes = {**self.default_sizes, **(sizes or {})}
        for split, n in self.sizes.items():
            if split not in SPLIT_CODES:
                raise DataError(f"{self.id}: unknown split '{split}' in sizes; splits: train, val, test")
            if not isinstance(n, int) or n < 0:
                raise DataError(f"{self.id}: size of split '{split}' must be a non-negative integer, got {n!r}")
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise DataError(f"{self.id}: image_size must be an integer >= 16, got {self.image_size!r}")
        self.world_seed = int(self.default_world_seed if world_seed is None else world_seed)
        self.difficulty = Difficulty.parse(difficulty)

    def world_spec(self) -> dict[str, Any]:
        """What `oracle_sample` needs to draw fresh samples of this world (in every sample's ``meta["world"]``)."""
        return {"dataset": self.id, "world_seed": self.world_seed, "difficulty": self.difficulty.as_dict()}

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        return [f"dm-{self.world_seed}-{split}-{i:05d}" for i in range(self.sizes[split])]

    def sample_cases(self, split: str) -> list[str | None]:
        return [None] * len(self.split_ids(split))  # every image is its own case

    def split_checksum(self, split: str) -> str:
        # The ids name the world seed and index; the image size changes every pixel, so it is part of the split too.
        from bench.data.base import checksum_ids

        tags = [f"image_size={self.image_size}", "generator=derm-mini/1"]
        if not self.difficulty.is_default():  # the default world keeps its checksums (and cached arms)
            tags.append("difficulty=" + ",".join(f"{k}={v!r}" for k, v in sorted(self.difficulty.as_dict().items())))
        return checksum_ids([*self.split_ids(split), *tags])

    def load(self, split: str) -> LazySamples:
        code = SPLIT_CODES[split]
        world = self.world_spec()

        def load_one(index: int, sample_id: str) -> Sample:
            image, mask, meta = _render_cached(self.world_seed, code, index, self.image_size,
                                               None if self.difficulty.is_default() else self.difficulty)
            return Sample(
                image=torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous(),
                mask=torch.from_numpy(mask.copy()),
                label=meta["label"],
                prompt=caption(meta),
                meta={"id": sample_id, "split": split, "index": index, **meta, "world": world},
            )

        return LazySamples(self.split_ids(split), load_one)


class Ph2Mini(DermMini):
    """ph2-mini: the mini twin of PH2 (200 dermoscopy images) as a train/val/test dataset of its own (MedDiff-FT
    Table 1 trains and tests on PH2): the derm-mini world with seed 7, the world that already stands in for PH2 as
    seg-aug's external transfer set, in PH2's size. Splits 120/40/40: MedDiff-FT's "20% of the data was allocated
    to the test and validation sets" read as 20 % each (spec A.8 [U]; `sizes` gives the other reading, 160/20/20)."""

    id: ClassVar[str] = "ph2-mini"
    default_sizes: ClassVar[dict[str, int]] = {"train": 120, "val": 40, "test": 40}
    default_world_seed: ClassVar[int] = 7

    def split_ids(self, split: str) -> list[str]:
        # the samples of derm-mini's world 7 (the transfer twin), under ids that name this dataset
        self._check_split(split)
        return [f"p2m-{self.world_seed}-{split}-{i:05d}" for i in range(self.sizes[split])]


def caption(meta: dict[str, Any]) -> str:
    """A DermPrompt-style caption from the ground-truth attributes."""
    a = meta["attributes"]
    where = "in the center" if a["location"] == "central" else f"in the {a['location']}"
    extras = [w for w, flag in (("hair", meta["hair"]), ("dark corners", meta["vignette"]), ("ruler marks", meta["ruler"])) if flag]
    tail = f", with {' and '.join(extras)}" if extras else ""
    return (f"An image of lesion on skin. A {a['size']}, {a['border']}, {a['colour']} lesion with {a['texture']} pattern "
            f"{where} on {a['skin_tone']} skin{tail}.")

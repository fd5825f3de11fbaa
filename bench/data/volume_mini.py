"""ct-spleen-mini and mri-prostate-mini: procedural CT / MRI volumes sliced to 2D, in cases (issue 21).

Mini twins of the MSD tasks DiffBoost uses (research/papers_meddiff_diffboost.md B.8; loader
`bench.data.msd`). Each case is a procedural volume defined in millimetres: anatomy as implicit shapes in
(x, y, z), so every structure, and the target organ's exact mask, varies smoothly from slice to slice.

* ``ct-spleen-mini``: portal-venous abdominal CT in Hounsfield units: air, the CT table, a body ellipse with
  subcutaneous fat and the muscle wall, ribs, liver, stomach (fluid and gas), aorta, IVC, the vertebra with its
  canal, paraspinal muscles, kidneys below the spleen's centre, bowel loops, and the spleen (a lobulated crescent
  ellipsoid, tilted through z); reconstruction blur and Gaussian noise.
* ``mri-prostate-mini``: T2-weighted pelvic MRI (arbitrary units): fat, muscles, femoral heads, pubic symphysis,
  bladder (above the gland), rectum behind it, seminal vesicles at the base, and the prostate as peripheral zone
  (bright) plus transition zone (darker, nodular); the mask is the whole gland (PZ | TZ, as the harness's
  msd-prostate loader gives it); a receive-coil bias field and Rician noise.

As the real loader: slices of one axial depth, only slices with more than ``min_foreground`` foreground pixels are
kept, each slice's intensities are clipped to its [0.5, 99.5] percentiles (CT: the lower clip at least -256 HU)
and scaled to [0, 1] (`bench.data.msd.normalise_slice`). The foreground count is taken on the world's 64-pixel
grid (the default ``image_size``), whatever the delivered size, so a split lists the same slices at every image
size (a generator's larger view must repeat the segmenters' ids). Splits are at case level: test is fold ``fold``
of an unshuffled ``n_folds``-fold KFold over the sorted cases (DiffBoost's code), the rest train and val
(``val_fraction`` of them, seeded): `bench.data.splits.kfold_assign` / `assign_splits`, as `bench.data.msd`.

``meta``: ``case`` (str), ``z`` (slice index), ``spacing`` (row, col) in mm at the delivered size (the case's
field of view / image side: CT ~0.8 mm at 512 px, MRI ~0.6 mm at 320 px natively), ``slice_thickness`` (mm),
``foreground_pixels`` (on the 64-pixel grid).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bench.data.base import DataError, DatasetSource, LazySamples, checksum_ids
from bench.data.msd import normalise_slice
from bench.data.splits import assign_splits, kfold_assign
from bench.interface import Sample

#: Side of the grid the foreground threshold is counted on (the default image size).
SELECTION_GRID = 64
#: Case index offset of the cases `oracle_sample` draws: never one of a world's cases.
ORACLE_CASE_OFFSET = 1_000_000


@dataclass(frozen=True)
class Modality:
    name: str
    code: int
    organ: str
    prefix: str
    n_cases: int
    n_slices: int
    thickness: tuple[float, float]
    native: int
    """Native matrix size (pixels)."""
    native_spacing: tuple[float, float]
    ct_floor: float | None
    prompt: str


CT = Modality("ct", 21, "spleen", "spleen", 30, 28, (4.0, 5.0), 512, (0.7, 0.9), -256.0,
              "a CT slice of the abdomen with the spleen")
MRI = Modality("mri", 22, "prostate", "prostate", 24, 20, (3.0, 3.6), 320, (0.55, 0.7), None,
               "a T2-weighted MRI slice of the prostate")


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
    """(x, y) inside the ellipse of centre (cx, cy), semi-axes a (along ``angle``) and b."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 < 1.0


def _smooth(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="reflect")
    return field / (field.std() + 1e-8)


@lru_cache(maxsize=256)
def case_params(modality: str, world_seed: int, case: int) -> dict[str, Any]:
    """The anatomy of one case (mm): every draw that is shared by its slices."""
    m = MODALITIES[modality]
    rng = np.random.default_rng([world_seed, m.code, case])
    spacing = rng.uniform(*m.native_spacing)
    p: dict[str, Any] = {"fov": spacing * m.native, "thickness": rng.uniform(*m.thickness),
                         "lobes": [(int(k), rng.normal(0, 0.06 / k ** 0.5), rng.uniform(0, 2 * math.pi)) for k in range(2, 6)]}
    if modality == "ct":
        a, b = rng.uniform(140, 170), rng.uniform(100, 125)
        fat, wall = rng.uniform(8, 25), rng.uniform(8, 14)
        cav_a, cav_b = a - fat - wall, b - fat - wall
        psi = rng.uniform(0.3, 0.75)  # where the spleen hugs the posterolateral wall (0: lateral, pi/2: posterior)
        long, short = rng.uniform(42, 58), rng.uniform(18, 26)
        bx, by = rng.normal(0, 5), rng.normal(-5, 5)
        wx, wy = cav_a * math.cos(psi), cav_b * math.sin(psi)
        out = math.hypot(wx, wy)
        p.update(body=(bx, by, a, b), fat=fat, wall=wall,
                 liver=(rng.uniform(0.35, 0.5), rng.uniform(0.5, 0.65), rng.uniform(95, 115)),
                 spleen_hu=rng.uniform(105, 130), noise=rng.uniform(10, 22),
                 spleen=dict(cx=bx + wx - (short + 2) * wx / out, cy=by + wy - (short + 2) * wy / out, long=long,
                             short=short, half_z=rng.uniform(45, 60), angle=psi + math.pi / 2 + rng.normal(0, 0.12),
                             cz=rng.uniform(-12, 12), tilt=(rng.normal(0, 0.1), rng.normal(-0.15, 0.08)),
                             hilum=rng.uniform(0.35, 0.6)),
                 stomach=(a * rng.uniform(0.2, 0.35), -b * rng.uniform(0.1, 0.35), rng.uniform(25, 40), rng.uniform(18, 30)),
                 gas=rng.random() < 0.7, bowel=[(rng.uniform(-0.5, 0.3) * a, rng.uniform(-0.6, 0.2) * b,
                                                rng.uniform(8, 16), rng.random() < 0.4) for _ in range(int(rng.integers(3, 7)))],
                 kidney_z=rng.uniform(-40, -20))
    else:
        p.update(body=(rng.normal(0, 4), rng.normal(5, 4), rng.uniform(165, 195), rng.uniform(110, 130)),
                 prostate=dict(cx=rng.normal(0, 3), cy=rng.normal(10, 4), a=rng.uniform(20, 27), b=rng.uniform(15, 21),
                               half_z=rng.uniform(17, 23), cz=rng.uniform(-6, 6), tz=rng.uniform(0.55, 0.75),
                               tilt=rng.normal(0, 0.1), base=rng.uniform(0.1, 0.25)),
                 pz=rng.uniform(0.65, 0.8), tz_level=rng.uniform(0.3, 0.45), bladder_r=rng.uniform(25, 45),
                 femur=rng.uniform(80, 95), noise=rng.uniform(0.02, 0.045), bias=rng.uniform(0.15, 0.35),
                 rectum_gas=rng.random() < 0.4)
    return p


def organ_mask(modality: str, p: dict[str, Any], x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """The target organ's exact mask at depth ``z`` mm on the pixel-centre coordinates ``x``, ``y`` (mm)."""
    if modality == "ct":
        s = p["spleen"]
        t = (z - s["cz"]) / s["half_z"]
        if abs(t) >= 1:
            return np.zeros(x.shape, dtype=bool)
        scale = math.sqrt(1 - t * t) * (1 + 0.15 * t)
        cx, cy = s["cx"] + s["tilt"][0] * (z - s["cz"]), s["cy"] + s["tilt"][1] * (z - s["cz"])
        long, short = s["long"] * scale, s["short"] * scale
    else:
        s = p["prostate"]
        t = (z - s["cz"]) / s["half_z"]
        if abs(t) >= 1:
            return np.zeros(x.shape, dtype=bool)
        scale = math.sqrt(1 - t * t) * (1 + s["base"] * t)  # the base (superior) wider than the apex
        cx, cy = s["cx"], s["cy"] + s["tilt"] * (z - s["cz"])
        long, short = s["a"] * scale, s["b"] * scale
    angle = s.get("angle", 0.0)
    c, sn = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * sn, -(x - cx) * sn + (y - cy) * c
    rho, phi = np.hypot(u / long, v / short), np.arctan2(v / short, u / long)
    radius = np.ones_like(phi)
    for k, amp, phase in p["lobes"]:
        radius += amp * np.cos(k * phi + phase + 0.3 * t)
    inside = rho < radius
    if modality == "ct":  # the hilum: a medial concavity makes the crescent
        nx, ny = -math.sin(angle), math.cos(angle)  # the short axis; pointed at the body's centre (medial)
        if nx * cx + ny * cy > 0:
            nx, ny = -nx, -ny
        inside &= ~_ellipse(x, y, cx + nx * short * 1.15, cy + ny * short * 1.15, long * s["hilum"], short * 0.7, angle)
    else:  # the rectum flattens the posterior surface
        inside &= y < cy + short * 0.8
    return inside


def _grid(size: int, fov: float) -> tuple[np.ndarray, np.ndarray]:
    centres = ((np.arange(size) + 0.5) / size - 0.5) * fov
    return np.meshgrid(centres, centres)  # x: columns (patient right on the image left), y: rows (anterior up)


def _ct_slice(p: dict[str, Any], rng: np.random.Generator, x: np.ndarray, y: np.ndarray, z: float,
              organ: np.ndarray, size: int) -> np.ndarray:
    bx, by, a, b = p["body"]
    hu = np.full(x.shape, -1000.0)
    table = (np.abs(y - (by + b + 8 - 0.0015 * x ** 2)) < 2.5) & (np.abs(x) < a * 1.1)  # the cradle
    hu[table] = 150.0
    body = _ellipse(x, y, bx, by, a, b)
    hu[body] = -100.0 + 10 * _smooth(rng, size, size / 30)[body]
    inner_a, inner_b = a - p["fat"], b - p["fat"]
    wall = _ellipse(x, y, bx, by, inner_a, inner_b)
    hu[wall] = 50.0
    cav_a, cav_b = inner_a - p["wall"], inner_b - p["wall"]
    cavity = _ellipse(x, y, bx, by, cav_a, cav_b)
    hu[cavity] = -90.0
    for k in range(9):  # ribs along the inner wall, lateral and posterior
        ang = math.pi * (0.05 + 0.9 * k / 8)
        rx, ry = bx + (cav_a + p["wall"] * 0.5) * math.cos(ang), by + (cav_b + p["wall"] * 0.5) * math.sin(ang)
        if z > -20 and math.sin(ang) > 0.2:
            hu[_ellipse(x, y, rx, ry, 7, 5, ang)] = 500.0
    lx, ly, liver_hu = p["liver"]
    liver = _ellipse(x, y, bx - cav_a * lx, by - cav_b * 0.05, cav_a * 0.55 * (1 + z / 200), cav_b * ly * (1 + z / 300))
    hu[liver & cavity] = liver_hu + 6 * _smooth(rng, size, size / 20)[liver & cavity]
    sx, sy, sa, sb = p["stomach"]
    if z > -30:
        stomach = _ellipse(x, y, bx + sx, by + sy, sa * (1 + z / 150), sb)
        hu[stomach & cavity] = 15.0
        if p["gas"]:
            hu[stomach & cavity & (y < by + sy - sb * 0.3)] = -950.0
    for gx, gy, gr, gas in p["bowel"]:
        loop = _ellipse(x, y, bx + gx + 0.2 * z, by + gy, gr, gr * 0.8) & cavity & ~liver
        hu[loop] = -800.0 if gas else 30.0
    vy = by + cav_b * 0.82
    hu[_ellipse(x, y, bx - 30, vy + 30, 24, 20)] = 55.0  # paraspinal muscles
    hu[_ellipse(x, y, bx + 30, vy + 30, 24, 20)] = 55.0
    hu[_ellipse(x, y, bx, vy - 8, 20, 17)] = 700.0  # vertebral body: cortex ...
    hu[_ellipse(x, y, bx, vy - 8, 16, 13)] = 250.0  # ... and cancellous bone
    hu[_ellipse(x, y, bx, vy + 18, 8, 7)] = 20.0  # canal
    hu[_ellipse(x, y, bx, vy + 32, 5, 9)] = 600.0  # spinous process
    hu[_ellipse(x, y, bx + 3, vy - 38, 11, 11)] = 170.0  # aorta
    hu[_ellipse(x, y, bx - 26, vy - 38, 12, 9)] = 125.0  # IVC
    if z < p["kidney_z"] + 45 and z > p["kidney_z"] - 45:
        kr = math.sqrt(max(0.0, 1 - ((z - p["kidney_z"]) / 45) ** 2))
        for side in (-1, 1):
            kidney = _ellipse(x, y, bx + side * 60, vy - 10, 28 * kr + 1e-3, 20 * kr + 1e-3, side * 0.5)
            hu[kidney] = 160.0
            hu[_ellipse(x, y, bx + side * 60, vy - 10, 14 * kr + 1e-3, 9 * kr + 1e-3, side * 0.5)] = 40.0
    hu[organ] = p["spleen_hu"] + 5 * _smooth(rng, size, size / 20)[organ]
    pixel = p["fov"] / size
    hu = gaussian_filter(hu, max(0.3, 0.8 / pixel))  # reconstruction kernel (~0.8 mm)
    return hu + p["noise"] * gaussian_filter(rng.standard_normal(x.shape), 0.5) * 1.5


def _mri_slice(p: dict[str, Any], rng: np.random.Generator, x: np.ndarray, y: np.ndarray, z: float,
               organ: np.ndarray, size: int) -> np.ndarray:
    bx, by, a, b = p["body"]
    sig = np.zeros(x.shape)
    body = _ellipse(x, y, bx, by, a, b)
    sig[body] = 0.75 + 0.04 * _smooth(rng, size, size / 20)[body]  # fat: bright on T2
    for side in (-1, 1):
        sig[_ellipse(x, y, bx + side * 95, by + 70, 55, 40, side * 0.4)] = 0.25  # gluteal muscles
        fx = bx + side * p["femur"]
        if abs(z) < 40:
            sig[_ellipse(x, y, fx, by - 5, 26, 26)] = 0.05  # cortex
            sig[_ellipse(x, y, fx, by - 5, 23, 23)] = 0.5  # marrow
        sig[_ellipse(x, y, bx + side * 50, by + 15, 11, 32, side * 0.25)] = 0.22  # obturator internus
        sig[_ellipse(x, y, bx + side * 30, by + 32, 5, 18, -side * 0.6)] = 0.2  # levator ani
    pr = p["prostate"]
    t = (z - pr["cz"]) / pr["half_z"]
    pcx, pcy = pr["cx"], pr["cy"] + pr["tilt"] * (z - pr["cz"])
    if z < pr["cz"]:
        sig[_ellipse(x, y, pcx, pcy - pr["b"] - 22, 22, 10)] = 0.1  # pubic symphysis (towards the apex): cortex
        sig[_ellipse(x, y, pcx, pcy - pr["b"] - 22, 18, 7)] = 0.45
    top = pr["cz"] + pr["half_z"] * 0.6
    if z > top:
        r = p["bladder_r"] * min(1.0, (z - top) / 15 + 0.3)
        sig[_ellipse(x, y, pcx, pcy - 10, r * 1.2, r)] = 0.97  # urine
    if pr["cz"] + pr["half_z"] * 0.5 < z < pr["cz"] + pr["half_z"] * 1.4:
        for side in (-1, 1):
            sig[_ellipse(x, y, pcx + side * 16, pcy + pr["b"] * 0.9, 14, 6, side * 0.4)] = 0.85  # seminal vesicles
    ry = pcy + pr["b"] + 13
    sig[_ellipse(x, y, pcx, ry, 19, 14)] = 0.18  # rectal wall
    sig[_ellipse(x, y, pcx, ry, 12, 8)] = 0.03 if p["rectum_gas"] else 0.4
    if organ.any():
        scale = math.sqrt(max(1e-6, 1 - t * t)) * (1 + pr["base"] * t)
        tz = _ellipse(x, y, pcx, pcy - pr["b"] * 0.25 * scale, pr["a"] * pr["tz"] * scale,
                      pr["b"] * pr["tz"] * scale) & organ  # transition zone: anterior, central
        sig[organ] = p["pz"] + 0.04 * _smooth(rng, size, size / 40)[organ]
        sig[tz] = p["tz_level"] + 0.08 * _smooth(rng, size, size / 30)[tz]
        capsule = organ & ~(np.roll(organ, 1, 0) & np.roll(organ, -1, 0) & np.roll(organ, 1, 1) & np.roll(organ, -1, 1))
        sig[capsule] *= 0.6  # the dark capsule line
    # receive-coil bias: brighter posteriorly (endorectal / pelvic array) and a smooth random field
    bias = 1 + p["bias"] * (y - by) / b * 0.5 + 0.1 * _smooth(rng, size, size / 4)
    sig = np.clip(sig * bias, 0, None)
    pixel = p["fov"] / size
    sig = gaussian_filter(sig, max(0.3, 0.6 / pixel))
    noise = p["noise"]
    return np.hypot(sig + noise * rng.standard_normal(x.shape), noise * rng.standard_normal(x.shape))  # Rician


def render_slice(modality: str, world_seed: int, case: int, z_index: int, size: int,
                 shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Slice ``z_index`` of case ``case``: image (H, W) float32 in [0, 1] (normalised as the real loader),
    mask (H, W) bool, meta. ``shape``: a (size, size) mask to paint the organ on instead of the drawn one
    (world-oracle)."""
    m = MODALITIES[modality]
    p = case_params(modality, world_seed, case)
    z = (z_index - (m.n_slices - 1) / 2) * p["thickness"]
    x, y = _grid(size, p["fov"])
    mask = organ_mask(modality, p, x, y, z)
    if shape is not None:
        shape = np.asarray(shape, dtype=bool)
        if shape.shape != (size, size):
            raise ValueError(f"{modality}: an organ shape must be a ({size}, {size}) mask, got {shape.shape}")
        mask = shape
    rng = np.random.default_rng([world_seed, m.code, case, z_index, 1])
    raw = (_ct_slice if modality == "ct" else _mri_slice)(p, rng, x, y, z, mask, size)
    image = normalise_slice(raw, (0.5, 99.5), m.ct_floor)
    spacing = (float(p["fov"] / size), float(p["fov"] / size))
    return image, mask, {"z": int(z_index), "z_mm": float(z), "spacing": spacing,
                         "slice_thickness": float(p["thickness"]), "modality": modality, "organ": m.organ}


@lru_cache(maxsize=256)
def foreground_counts(modality: str, world_seed: int, case: int) -> tuple[int, ...]:
    """Foreground pixels of every slice of a case on the `SELECTION_GRID`."""
    m = MODALITIES[modality]
    p = case_params(modality, world_seed, case)
    x, y = _grid(SELECTION_GRID, p["fov"])
    return tuple(int(organ_mask(modality, p, x, y, (k - (m.n_slices - 1) / 2) * p["thickness"]).sum())
                 for k in range(m.n_slices))


@lru_cache(maxsize=8192)
def _render_cached(modality: str, world_seed: int, case: int, z_index: int, size: int
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    image, mask, meta = render_slice(modality, world_seed, case, z_index, size)
    image.setflags(write=False)
    mask.setflags(write=False)
    return image, mask, meta


MODALITIES = {"ct": CT, "mri": MRI}


def caption(meta: dict[str, Any]) -> str:
    return MODALITIES[meta["modality"]].prompt


def oracle_sample(world: dict[str, Any], key: int, size: int, label: int | None = None,
                  shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A fresh slice of the world ``world`` (`VolumeMini.world_spec`): a slice of a new case (never one of the
    world's), at a depth where the organ passes the foreground threshold; with ``shape`` the organ is painted on
    that mask (the rest of the anatomy drawn as usual). ``label`` is ignored (no classes).

    Returns:
        image (H, W, C) float32, mask (H, W) bool, meta.
    """
    modality, seed = world["modality"], int(world["world_seed"])
    case = ORACLE_CASE_OFFSET + int(key) % (2 ** 40)
    counts = foreground_counts(modality, seed, case)
    kept = [k for k, n in enumerate(counts) if n > int(world.get("min_foreground", 20))] or [int(np.argmax(counts))]
    z_index = kept[int(np.random.default_rng([seed, case, 5]).integers(len(kept)))]
    image, mask, meta = render_slice(modality, seed, case, z_index, size, shape)
    channels = int(world.get("channels", 1))
    return np.repeat(image[..., None], channels, axis=2), mask, {**meta, "case": f"oracle-{case}"}


class VolumeMini(DatasetSource):
    """Procedural volumes as 2D slices with case-level folds (see module doc).

    Options:
        n_cases: number of cases (volumes) (default: ct-spleen-mini 30, mri-prostate-mini 24).
        fold, n_folds: test fold of the unshuffled case-level KFold (default 0 of 3, DiffBoost).
        val_fraction, val_seed: share of the non-test cases used for validation (default 0.15, seed 2022).
        min_foreground: keep slices with more foreground pixels (on the 64-pixel grid) than this (default 20).
        world_seed: seed of the world (not of the run).
        channels: 1 (default, as the msd loaders) or 3 (grey repeated).
    """

    modality: ClassVar[Modality] = CT
    fields = frozenset({"image", "mask", "prompt"})
    needs_root = False
    OPTIONS: ClassVar[tuple[str, ...]] = ("n_cases", "fold", "n_folds", "val_fraction", "val_seed", "min_foreground",
                                          "world_seed", "channels")

    def __init__(self, root: Path | None = None, image_size: int | None = 64, n_cases: int | None = None,
                 fold: int = 0, n_folds: int = 3, val_fraction: float = 0.15, val_seed: int = 2022,
                 min_foreground: int = 20, world_seed: int = 2022, channels: int = 1, **options: Any) -> None:
        if options:
            raise DataError(f"{self.id}: unknown option(s) {', '.join(sorted(options))}; valid: {', '.join(self.OPTIONS)}")
        super().__init__(root, image_size or 64)
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 16:
            raise DataError(f"{self.id}: image_size must be an integer >= 16, got {self.image_size!r}")
        n_cases = self.modality.n_cases if n_cases is None else n_cases
        for name, value, low in (("n_cases", n_cases, 1), ("n_folds", n_folds, 2), ("fold", fold, 0),
                                 ("min_foreground", min_foreground, 0), ("world_seed", world_seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DataError(f"{self.id}: {name} must be an integer >= {low}, got {value!r}")
        if fold >= n_folds:
            raise DataError(f"{self.id}: fold must be in 0..{n_folds - 1}, got {fold}")
        if n_cases < n_folds:
            raise DataError(f"{self.id}: {n_cases} cases cannot make {n_folds} folds")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
            raise DataError(f"{self.id}: val_fraction must be a number in [0, 1), got {val_fraction!r}")
        if channels not in (1, 3):
            raise DataError(f"{self.id}: channels must be 1 or 3, got {channels!r}")
        self.n_cases, self.fold, self.n_folds = n_cases, fold, n_folds
        self.val_fraction, self.val_seed, self.min_foreground = float(val_fraction), int(val_seed), min_foreground
        self.world_seed, self.channels = world_seed, channels
        self._split_cases: dict[str, list[str]] | None = None

    def world_spec(self) -> dict[str, Any]:
        return {"dataset": self.id, "modality": self.modality.name, "world_seed": self.world_seed,
                "min_foreground": self.min_foreground, "channels": self.channels}

    def case_name(self, case: int) -> str:
        return f"{self.modality.prefix}_{case:03d}"

    def cases(self) -> list[str]:
        return sorted(self.case_name(i) for i in range(self.n_cases))

    def split_cases(self) -> dict[str, list[str]]:
        """Case names of each split: test = fold ``fold`` of the unshuffled KFold, val drawn from the rest."""
        if self._split_cases is None:
            train_cases, test_cases = kfold_assign(self.cases(), self.n_folds, self.fold)
            inner = assign_splits(train_cases, {"train": 1.0 - self.val_fraction, "val": self.val_fraction},
                                  self.val_seed)
            self._split_cases = {"train": sorted(c for c in train_cases if inner[c] == "train"),
                                 "val": sorted(c for c in train_cases if inner[c] == "val"), "test": list(test_cases)}
        return self._split_cases

    def slices(self, split: str) -> list[tuple[str, int, int, int]]:
        """(case name, case index, z, foreground pixels on the selection grid) of each kept slice of ``split``."""
        self._check_split(split)
        out = []
        for name in self.split_cases()[split]:
            case = int(name.rsplit("_", 1)[1])
            counts = foreground_counts(self.modality.name, self.world_seed, case)
            out.extend((name, case, z, n) for z, n in enumerate(counts) if n > self.min_foreground)
        return out

    def split_ids(self, split: str) -> list[str]:
        return [f"{name}:z{z:03d}" for name, _, z, _ in self.slices(split)]

    def sample_cases(self, split: str) -> list[str | None]:
        return [name for name, *_ in self.slices(split)]

    def split_checksum(self, split: str) -> str:
        tags = [f"image_size={self.image_size}", f"generator={self.id}/1", f"world_seed={self.world_seed}",
                f"channels={self.channels}"]
        return checksum_ids([*self.split_ids(split), *tags])

    def load(self, split: str) -> LazySamples:
        rows = self.slices(split)
        world = self.world_spec()

        def load_one(index: int, sample_id: str) -> Sample:
            name, case, z, count = rows[index]
            image, mask, meta = _render_cached(self.modality.name, self.world_seed, case, z, self.image_size)
            tensor = torch.from_numpy(np.array(image))[None].repeat(self.channels, 1, 1).contiguous()
            return Sample(image=tensor, mask=torch.from_numpy(mask.copy()), prompt=caption(meta),
                          meta={"id": sample_id, "split": split, "index": index, "case": name,
                                "foreground_pixels": count, **meta, "world": world})

        return LazySamples(self.split_ids(split), load_one)


class CtSpleenMini(VolumeMini):
    """ct-spleen-mini: abdominal CT volumes with the spleen (MSD Task09_Spleen's twin), 30 cases."""

    id: ClassVar[str] = "ct-spleen-mini"
    modality = CT


class MriProstateMini(VolumeMini):
    """mri-prostate-mini: T2-weighted pelvic MRI volumes with the whole prostate gland (MSD Task05_Prostate's
    twin), 24 cases."""

    id: ClassVar[str] = "mri-prostate-mini"
    modality = MRI


__all__ = ["CtSpleenMini", "MriProstateMini", "VolumeMini", "caption", "oracle_sample", "render_slice"]

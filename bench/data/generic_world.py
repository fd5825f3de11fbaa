"""The generic mini world: coloured, textured shapes on backgrounds, with captions and object masks.

This is mini-sd's and mini-clip's pretraining world (the stand-in for LAION). A
scene holds one or two objects; each object has a shape, a colour and a
texture. Its caption names them in image order from left to right, e.g.
``"a striped red circle and a blue square"`` (the texture word is omitted when
the texture is plain). Every object's exact mask is returned, which is what
the auxiliary attention loss of mini-sd and the noun-word IoU gate use.

Determinism: a scene is a function of ``(world_seed, split, index)`` only.
Held-out combinations: `HELD_OUT_PAIRS` (colour, shape) never occur in the
``train`` split; every ``test`` scene contains at least one of them, so the
test split measures compositional generalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import DataError, DatasetSource, LazySamples

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS = {
    "red": (0.86, 0.12, 0.10),
    "green": (0.12, 0.66, 0.20),
    "blue": (0.14, 0.26, 0.92),
    "yellow": (0.96, 0.86, 0.10),
    "purple": (0.58, 0.18, 0.74),
    "orange": (1.00, 0.54, 0.04),
}
TEXTURES = ("plain", "striped", "dotted")
#: (colour, shape) pairings never shown in training; each test scene holds at least one.
HELD_OUT_PAIRS = (("red", "star"), ("green", "circle"), ("blue", "triangle"), ("yellow", "cross"),
                  ("purple", "square"), ("orange", "heart"))
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 100_000, "val": 500, "test": 500}


@dataclass(frozen=True)
class WorldObject:
    """One object of a scene: its words and its exact mask (H, W) bool."""

    shape: str
    colour: str
    texture: str
    mask: np.ndarray

    @property
    def phrase(self) -> str:
        texture = "" if self.texture == "plain" else f"{self.texture} "
        return f"{texture}{self.colour} {self.shape}"


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Mask (size, size) bool of a shape centred at (cx, cy) pixels with outer radius ``r`` pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if shape == "circle":
        return rho <= r
    if shape == "square":
        return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
    if shape == "triangle":  # apex up in the rotated frame
        h = r * 1.5
        top, base = -r, -r + h
        half = (v - top) / h * r * 0.95
        return (v >= top) & (v <= base) & (np.abs(u) <= half)
    if shape == "star":
        spikes = 0.5 + 0.5 * np.cos(5 * phi)
        return rho <= r * (0.5 + 0.5 * spikes ** 2)
    if shape == "cross":
        arm = r * 0.36
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    if shape == "heart":
        x, y = u / r * 1.2, -v / r * 1.2 + 0.25
        return (x ** 2 + y ** 2 - 1) ** 3 - x ** 2 * y ** 3 <= 0
    raise ValueError(f"unknown shape '{shape}'; shapes: {', '.join(SHAPES)}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A greyish background (H, W, 3): flat, a linear gradient, or soft blotches."""
    base = rng.uniform(0.25, 0.75)
    tint = rng.normal(0, 0.03, size=3)
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == 0:
        lum = np.full((size, size), base)
    elif kind == 1:
        a = rng.uniform(0, 2 * math.pi)
        lum = base + rng.uniform(0.1, 0.25) * ((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a))
    else:
        lum = np.full((size, size), base)
        for _ in range(int(rng.integers(2, 5))):
            bx, by, br = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
            lum += rng.uniform(-0.12, 0.12) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * br ** 2))
    return np.clip(lum[..., None] + tint, 0, 1)


def _texture(texture: str, rng: np.random.Generator, size: int, colour: np.ndarray) -> np.ndarray:
    """Object appearance (H, W, 3) for a texture: the colour, with stripes or dots in a lighter/darker shade."""
    out = np.broadcast_to(colour, (size, size, 3)).copy()
    if texture == "plain":
        return out
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = max(3.0, size / 10.0)
    if texture == "striped":
        a = rng.uniform(0, math.pi)
        on = np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period) > 0.2
    elif texture == "dotted":
        ox, oy = rng.uniform(0, period, size=2)
        on = np.hypot((xx - ox) % period - period / 2, (yy - oy) % period - period / 2) < period * 0.28
    else:
        raise ValueError(f"unknown texture '{texture}'; textures: {', '.join(TEXTURES)}")
    shade = colour * 0.35 if colour.mean() > 0.45 else colour * 0.4 + 0.55
    out[on] = shade
    return out


def _draw_pair(rng: np.random.Generator, held_out: bool) -> tuple[str, str]:
    """A (colour, shape) pair: one of `HELD_OUT_PAIRS` if ``held_out``, else any other pairing."""
    if held_out:
        colour, shape = HELD_OUT_PAIRS[int(rng.integers(len(HELD_OUT_PAIRS)))]
        return colour, shape
    held = set(HELD_OUT_PAIRS)
    while True:
        pair = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
        if pair not in held:
            return pair


def render_scene(world_seed: int, split: str, index: int, size: int = 32,
                 n_objects: int | None = None) -> tuple[np.ndarray, list[WorldObject], str]:
    """Render one scene.

    Args:
        world_seed: the world's seed.
        split: ``train`` and ``val`` use only seen (colour, shape) pairs; ``test`` scenes hold at least one
            held-out pair.
        index: scene index within the split.
        size: image side in pixels (scenes are laid out in relative units, so any size works; 32 is mini-sd's).
        n_objects: force 1 or 2 objects (default: 2 with probability 0.6).

    Returns:
        image (H, W, 3) float32 in [0, 1], objects (left to right, disjoint masks), caption.
    """
    if split not in SPLIT_CODES:
        raise DataError(f"generic world: unknown split '{split}'; splits: {', '.join(SPLIT_CODES)}")
    rng = np.random.default_rng([world_seed, SPLIT_CODES[split], index])
    n = n_objects if n_objects is not None else (2 if rng.random() < 0.6 else 1)
    image = _background(rng, size)
    s = float(size)
    pairs: list[tuple[str, str]] = []
    for k in range(n):
        # In test scenes the first drawn object is a held-out pairing, the other a seen one.
        held_out = split == "test" and k == 0
        pair = _draw_pair(rng, held_out)
        while any(pair[0] == p[0] or pair[1] == p[1] for p in pairs):  # two objects differ in colour and shape
            pair = _draw_pair(rng, held_out)
        pairs.append(pair)
    objects: list[WorldObject] = []
    occupied = np.zeros((size, size), bool)
    # Two objects go in the left and right halves (jittered); one object anywhere near the centre.
    slots = [0.5] if n == 1 else [0.27, 0.73]
    order = rng.permutation(n)
    for slot, k in zip(slots, order):
        colour, shape = pairs[k]
        texture = str(rng.choice(TEXTURES, p=[0.5, 0.25, 0.25]))
        r = s * (rng.uniform(0.2, 0.3) if n == 1 else rng.uniform(0.15, 0.21))
        cx = s * slot + rng.normal(0, s * (0.08 if n == 1 else 0.03))
        cy = s * 0.5 + rng.normal(0, s * 0.12)
        cx, cy = float(np.clip(cx, r, s - r)), float(np.clip(cy, r, s - r))
        mask = shape_mask(shape, size, cx, cy, r, rng.normal(0, 0.25)) & ~occupied
        if mask.sum() < 2:
            mask = shape_mask("circle", size, cx, cy, max(r, 2.0), 0.0) & ~occupied
        rgb = np.array(COLOURS[colour]) + rng.normal(0, 0.04, size=3)
        appearance = _texture(texture, rng, size, np.clip(rgb, 0, 1))
        shading = 1.0 + 0.08 * rng.normal() * (np.mgrid[0:size, 0:size][0] / s - 0.5)
        image[mask] = np.clip(appearance[mask] * shading[mask][:, None], 0, 1)
        occupied |= mask
        objects.append(WorldObject(shape, colour, texture, mask))
    objects.sort(key=lambda o: float(np.nonzero(o.mask)[1].mean()))
    image = np.clip(image + rng.normal(0, 0.015, size=image.shape), 0, 1).astype(np.float32)
    return image, objects, caption_of(objects)


def caption_of(objects: list[WorldObject]) -> str:
    """``"a red circle"`` / ``"a striped red circle and a blue square"`` (objects in the given order)."""
    return " and ".join(f"a {o.phrase}" for o in objects)


def word_positions(objects: list[WorldObject]) -> list[dict[str, int]]:
    """Word index (0-based, whitespace-split caption) of each object's colour and shape word."""
    out, pos = [], 0
    for k, o in enumerate(objects):
        pos += 1 if k == 0 else 2  # "a" or "and a"
        if o.texture != "plain":
            pos += 1
        out.append({"colour": pos, "shape": pos + 1})
        pos += 2
    return out


def vocabulary() -> list[str]:
    """Every word the generic world's captions use."""
    return ["a", "and", *SHAPES, *COLOURS, *TEXTURES]


class GenericWorld(DatasetSource):
    """The generic pretraining world as a dataset of `Sample`s (see module doc).

    ``Sample.mask`` is the union of the object masks; ``meta["object_masks"]`` is a bool tensor
    (K, H, W) and ``meta["objects"]`` lists each object's shape, colour and texture, left to right.

    Options:
        sizes: samples per split, default ``{"train": 100000, "val": 500, "test": 500}``.
        world_seed: the world's seed.
    """

    id: ClassVar[str] = "generic-world"
    fields = frozenset({"image", "mask", "prompt"})
    needs_root = False

    def __init__(self, root: Path | None = None, image_size: int | None = 32, sizes: dict[str, int] | None = None,
                 world_seed: int = 7, **options: Any) -> None:
        if options:
            raise DataError(f"generic-world: unknown option(s) {', '.join(sorted(options))}; valid: sizes, world_seed")
        super().__init__(root, image_size or 32)
        self.sizes = {**DEFAULT_SIZES, **(sizes or {})}
        self.world_seed = int(world_seed)

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        return [f"gw-{self.world_seed}-{split}-{i:06d}" for i in range(self.sizes[split])]

    def split_checksum(self, split: str) -> str:
        from bench.data.base import checksum_ids

        return checksum_ids([*self.split_ids(split), f"image_size={self.image_size}", "generator=generic-world/1"])

    def load(self, split: str) -> LazySamples:
        import torch

        from bench.interface import Sample

        def load_one(index: int, sample_id: str) -> Sample:
            image, objects, caption = render_scene(self.world_seed, split, index, self.image_size)
            masks = torch.from_numpy(np.stack([o.mask for o in objects]))
            return Sample(image=torch.from_numpy(image).permute(2, 0, 1).contiguous(), mask=masks.any(0),
                          prompt=caption,
                          meta={"id": sample_id, "split": split, "index": index, "object_masks": masks,
                                "objects": [{"shape": o.shape, "colour": o.colour, "texture": o.texture}
                                            for o in objects]})

        return LazySamples(self.split_ids(split), load_one)

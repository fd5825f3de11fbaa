"""concept-mini: scenes of two distinct composite objects ("concepts") on backgrounds, with exact masks.

The mini twin of AttenCraft's data (thesis chapter 3: one input image holding two concepts). The world has
`N_CONCEPTS` fixed concept identities, each a composite object of one of `CONCEPT_KINDS` (house, tree,
mushroom, ...) with its own two-colour palette and pattern, so an identity is recognisable across poses.
A *concept pair* p uses concepts ``PAIRS[p] = (i, j)`` of different kinds.

Splits (per concept pair, so ``sizes`` count pairs x views):
* ``train``: the pair's input image(s): both concepts side by side (view 0 is *the* AttenCraft input image);
* ``test``: reference images of each concept alone in other poses and backgrounds (CLIP-I / DINO references),
  alternating concept i, concept j.

Sample fields: ``image`` (3, H, W) in [0, 1]; ``mask`` (union of the concept masks); ``prompt``
(``"a photo of a house and a tree"``); ``meta``: ``pair``, ``view``, ``concepts`` (ids), ``kinds``,
``object_masks`` (K, H, W) bool, left to right.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import DataError, DatasetSource, LazySamples

#: Class words of the concepts (each concept is a fixed composite object of one of these kinds).
CONCEPT_KINDS = ("house", "tree", "mushroom", "fish", "flower", "kite", "robot", "cup")
N_CONCEPTS = 16
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
ORACLE_SPLIT_CODE = 7  # world-oracle's renders: never a view of any split
PALETTE = np.array([[0.85, 0.15, 0.12], [0.12, 0.6, 0.22], [0.15, 0.3, 0.9], [0.95, 0.8, 0.1], [0.6, 0.2, 0.75],
                    [1.0, 0.5, 0.05], [0.95, 0.95, 0.92], [0.35, 0.2, 0.1], [0.1, 0.7, 0.75], [0.9, 0.45, 0.6]])


def vocabulary() -> list[str]:
    """Every word concept-mini's captions use."""
    return ["a", "photo", "of", "and", "the", *CONCEPT_KINDS]


def concept_identity(world_seed: int, concept: int) -> dict[str, Any]:
    """The fixed appearance of concept ``concept``: kind, main and accent colour, pattern."""
    rng = np.random.default_rng([world_seed, 99, concept])
    main, accent = rng.choice(len(PALETTE), size=2, replace=False)
    return {"id": concept, "kind": CONCEPT_KINDS[concept % len(CONCEPT_KINDS)], "main": PALETTE[main],
            "accent": PALETTE[accent], "pattern": str(rng.choice(["plain", "stripes", "dots"]))}


def concept_pairs(world_seed: int, n_pairs: int = 16) -> list[tuple[int, int]]:
    """Pairs of concepts of different kinds, deterministic from the seed."""
    rng = np.random.default_rng([world_seed, 98])
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n_pairs:
        i, j = (int(v) for v in rng.choice(N_CONCEPTS, size=2, replace=False))
        if i % len(CONCEPT_KINDS) != j % len(CONCEPT_KINDS) and (i, j) not in pairs:
            pairs.append((i, j))
    return pairs


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def _rect(xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)


def _parts(kind: str, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(main part, accent part) masks of a kind in unit object coordinates (object spans about [-1, 1]^2)."""
    if kind == "house":
        body = _rect(xx, yy, -0.7, -0.1, 0.7, 0.9)
        roof = (yy < -0.1) & (yy > -0.9) & (np.abs(xx) < (yy + 0.9) * 1.0)
        door = _rect(xx, yy, -0.15, 0.4, 0.15, 0.9)
        return body & ~door, roof | door
    if kind == "tree":
        return _ellipse(xx, yy, 0, -0.3, 0.75, 0.6), _rect(xx, yy, -0.15, 0.25, 0.15, 0.95)
    if kind == "mushroom":
        cap = _ellipse(xx, yy, 0, -0.1, 0.9, 0.6) & (yy < -0.05)
        return cap, _rect(xx, yy, -0.22, -0.05, 0.22, 0.85)
    if kind == "fish":
        body = _ellipse(xx, yy, -0.15, 0, 0.65, 0.4)
        tail = (xx > 0.45) & (xx < 0.95) & (np.abs(yy) < (xx - 0.45) * 0.9)
        eye = _ellipse(xx, yy, -0.5, -0.08, 0.09, 0.09)
        return body & ~eye, tail | eye
    if kind == "flower":
        petals = np.zeros_like(xx, dtype=bool)
        for k in range(5):
            a = 2 * math.pi * k / 5
            petals |= _ellipse(xx, yy, 0.35 * math.cos(a), -0.3 + 0.35 * math.sin(a), 0.25, 0.25)
        centre = _ellipse(xx, yy, 0, -0.3, 0.18, 0.18)
        stem = _rect(xx, yy, -0.06, 0.0, 0.06, 0.95)
        return petals & ~centre, centre | (stem & ~petals)
    if kind == "kite":
        diamond = np.abs(xx) / 0.6 + np.abs(yy + 0.2) / 0.75 <= 1
        tail = (np.abs(xx - 0.15 * np.sin(yy * 9)) < 0.05) & (yy > 0.5) & (yy < 0.98)
        return diamond, tail | (diamond & (np.abs(xx) < 0.04))
    if kind == "robot":
        head = _rect(xx, yy, -0.4, -0.9, 0.4, -0.35)
        body = _rect(xx, yy, -0.6, -0.25, 0.6, 0.7)
        legs = _rect(xx, yy, -0.45, 0.7, -0.15, 0.95) | _rect(xx, yy, 0.15, 0.7, 0.45, 0.95)
        eyes = _ellipse(xx, yy, -0.17, -0.65, 0.08, 0.08) | _ellipse(xx, yy, 0.17, -0.65, 0.08, 0.08)
        return (head | body) & ~eyes, legs | eyes
    if kind == "cup":
        cup = (yy > -0.6) & (yy < 0.8) & (np.abs(xx + 0.15) < 0.55 - 0.12 * (yy - 0.8) / 1.4)
        handle = _ellipse(xx, yy, 0.5, 0.05, 0.32, 0.32) & ~_ellipse(xx, yy, 0.5, 0.05, 0.17, 0.17) & (xx > 0.35)
        return cup, handle
    raise ValueError(f"unknown concept kind '{kind}'")


def draw_concept(image: np.ndarray, identity: dict[str, Any], cx: float, cy: float, radius: float, flip: bool,
                 occupied: np.ndarray) -> np.ndarray:
    """Paint one concept into ``image`` (H, W, 3) in place; return its mask (excluding ``occupied`` pixels)."""
    size = image.shape[0]
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5)
    u, v = (xx - cx) / radius, (yy - cy) / radius
    if flip:
        u = -u
    main, accent = _parts(identity["kind"], u, v)
    main &= ~occupied
    accent &= ~occupied
    colour = np.broadcast_to(identity["main"], image.shape).copy()
    if identity["pattern"] == "stripes":
        colour[(np.sin(v * 9) > 0.4)] = identity["main"] * 0.55
    elif identity["pattern"] == "dots":
        colour[(np.sin(u * 8) > 0.6) & (np.sin(v * 8) > 0.6)] = identity["main"] * 0.5 + 0.45
    image[main] = colour[main]
    image[accent] = identity["accent"]
    return main | accent


def render_scene(world_seed: int, concepts: list[int], variation: tuple[int, ...], size: int = 64
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw ``concepts`` (one or two) side by side; returns image (H, W, 3) float32 in [0, 1] and masks (left to right)."""
    from bench.data.generic_world import _background

    rng = np.random.default_rng([world_seed, *variation])
    image = _background(rng, size)
    s = float(size)
    occupied = np.zeros((size, size), bool)
    masks = []
    slots = [0.5] if len(concepts) == 1 else [0.27, 0.73]
    for slot, concept in zip(slots, concepts):
        r = s * (rng.uniform(0.26, 0.34) if len(concepts) == 1 else rng.uniform(0.17, 0.21))
        cx = s * slot + rng.normal(0, s * 0.02)
        cy = s * 0.5 + rng.normal(0, s * 0.05)
        mask = draw_concept(image, concept_identity(world_seed, concept), cx, cy, r, bool(rng.random() < 0.3),
                            occupied)
        occupied |= mask
        masks.append(mask)
    image = np.clip(image + rng.normal(0, 0.01, size=image.shape), 0, 1).astype(np.float32)
    return image, masks


def oracle_sample(world: dict[str, Any], key: int, size: int, label: int | None = None, shape: Any = None,
                  scene: str | None = None, kind: str | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A fresh render of the concepts a concept-task condition asks for: ``kind`` ``subject<k>`` draws the scene's
    k-th concept alone, ``global`` both side by side, in a pose and background of the oracle stream ``key`` (never
    a view of any split). ``world["scene_concepts"]`` maps the task's scene ids to their concept ids (the
    world-oracle reads it from the fit set). ``label`` and ``shape`` do not apply.

    Returns:
        image (H, W, 3) float32 in [0, 1], the union of the concept masks, meta (``kinds``: class words drawn).
    """
    concepts = list((world.get("scene_concepts") or {}).get(scene) or [])
    if not concepts:
        raise DataError(f"concept-mini oracle: scene '{scene}' is not one of the fit set's scenes")
    if kind is not None and kind.startswith("subject"):
        concepts = [concepts[int(kind[len("subject"):]) - 1]]
    seed = int(world["world_seed"])
    image, masks = render_scene(seed, concepts, (ORACLE_SPLIT_CODE, int(key) % (2 ** 62)), size)
    return image, np.any(np.stack(masks), axis=0), {"kinds": [concept_identity(seed, c)["kind"] for c in concepts]}


def oracle_caption(meta: dict[str, Any]) -> str:
    """The dataset's own caption of an oracle render (``a photo of a house and a tree``)."""
    return "a photo of " + " and ".join(f"a {k}" for k in meta["kinds"])


class ConceptMini(DatasetSource):
    """Two-concept scenes with exact masks (module doc).

    Options:
        n_pairs: number of concept pairs (datasets), default 16 as AttenCraft's 16 datasets.
        train_views: two-concept images per pair in ``train`` (default 1: the single AttenCraft input image).
        test_views: single-concept reference images per pair in ``test`` (default 8, 4 per concept).
        world_seed: the world's seed.
    """

    id: ClassVar[str] = "concept-mini"
    fields = frozenset({"image", "mask", "prompt"})
    needs_root = False

    def __init__(self, root: Path | None = None, image_size: int | None = 64, n_pairs: int = 16, train_views: int = 1,
                 test_views: int = 8, world_seed: int = 3, **options: Any) -> None:
        if options:
            raise DataError(f"concept-mini: unknown option(s) {', '.join(sorted(options))}; "
                            "valid: n_pairs, train_views, test_views, world_seed")
        super().__init__(root, image_size or 64)
        if not 1 <= n_pairs <= 64:
            raise DataError(f"concept-mini: n_pairs must be in 1..64, got {n_pairs}")
        self.n_pairs, self.world_seed = int(n_pairs), int(world_seed)
        self.views = {"train": int(train_views), "val": 1, "test": int(test_views)}
        self.pairs = concept_pairs(self.world_seed, self.n_pairs)

    def split_ids(self, split: str) -> list[str]:
        self._check_split(split)
        return [f"cm-{self.world_seed}-{split}-p{p:02d}-v{v:02d}" for p in range(self.n_pairs)
                for v in range(self.views[split])]

    def split_checksum(self, split: str) -> str:
        from bench.data.base import checksum_ids

        return checksum_ids([*self.split_ids(split), f"image_size={self.image_size}", "generator=concept-mini/1"])

    def load(self, split: str) -> LazySamples:
        import torch

        from bench.interface import Sample

        self._check_split(split)
        per = self.views[split]

        def load_one(index: int, sample_id: str) -> Sample:
            pair, view = divmod(index, per)
            i, j = self.pairs[pair]
            concepts = [i, j] if split != "test" else [(i, j)[view % 2]]
            image, masks = render_scene(self.world_seed, concepts, (SPLIT_CODES[split], pair, view), self.image_size)
            kinds = [concept_identity(self.world_seed, c)["kind"] for c in concepts]
            stack = torch.from_numpy(np.stack(masks))
            return Sample(image=torch.from_numpy(image).permute(2, 0, 1).contiguous(), mask=stack.any(0),
                          prompt="a photo of " + " and ".join(f"a {k}" for k in kinds),
                          meta={"id": sample_id, "split": split, "pair": pair, "view": view, "concepts": concepts,
                                "kinds": kinds, "object_masks": stack,
                                "world": {"dataset": self.id, "world_seed": self.world_seed}})

        return LazySamples(self.split_ids(split), load_one)

"""Cache of real-image feature statistics, keyed by (dataset, split, extractor, resolution).

A second evaluation against the same real set only extracts the generated images.
The key is built by exactly one function, `reference_key` (STYLE 6.7); a stats file
is never overwritten silently (`save_reference_stats` raises unless
``overwrite=True``). Files are ``.npz`` (no pickle) in a cache directory argument.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.metrics.image import GaussianStats, extract_features
from bench.store import atomic_path

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9.=+-]+")


def reference_key(dataset: str, split: str, extractor: str, resolution: int, extra: str = "") -> str:
    """The one place a reference-statistics key is built.

    Args:
        dataset: dataset id, e.g. ``"isic2018_task1"``.
        split: split name or split checksum, e.g. ``"test"`` or ``"test-3f2a9c1e"``.
        extractor: extractor label as in the metric key, e.g. ``"inception-v3"``
            (add a weights hash to it when several weight files share a name).
        resolution: side length the real images were resized to before extraction.
        extra: any further protocol choice (resize filter, channel handling...).

    Returns:
        A filesystem-safe key, e.g. ``"isic2018_task1__test__inception-v3__256"``.
    """
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    parts = [dataset, split, extractor, str(int(resolution))] + ([extra] if extra else [])
    for p in parts:
        if not p:
            raise ValueError(f"empty component in reference key {parts}")
    return "__".join(_SAFE.sub("_", p) for p in parts).lower()


def stats_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.npz"


def load_reference_stats(cache_dir: str | Path, key: str) -> GaussianStats | None:
    """The cached statistics for ``key``, or None when absent."""
    path = stats_path(cache_dir, key)
    if not path.exists():
        return None
    logger.info("reference statistics: cache hit %s", path)
    return GaussianStats.load(path)


def save_reference_stats(cache_dir: str | Path, key: str, stats: GaussianStats, overwrite: bool = False) -> Path:
    """Write statistics under ``key``; refuses to replace an existing file unless ``overwrite``."""
    path = stats_path(cache_dir, key)
    if path.exists() and not overwrite:
        raise FileExistsError(f"reference statistics {path} already exist; delete the file or pass overwrite=True to replace them")
    with atomic_path(path, suffix=".tmp.npz") as tmp:  # numpy appends .npz to a name without it
        stats.save(tmp)
    return path


def reference_stats(
    cache_dir: str | Path,
    key: str,
    extractor: nn.Module,
    images: Callable[[], Tensor] | Tensor,
    batch_size: int = 64,
    keep_features: bool = False,
) -> GaussianStats:
    """Load the statistics for ``key`` or compute and cache them.

    Args:
        cache_dir: cache directory.
        key: from `reference_key`.
        extractor: module mapping images to (N, d).
        images: real images (N, C, H, W) in [0, 1], or a zero-argument callable
            returning them (so loading is skipped on a cache hit).
        keep_features: also store raw features (needed for KID).
    """
    cached = load_reference_stats(cache_dir, key)
    if cached is not None and (cached.keep_features or not keep_features):
        return cached
    real = images() if callable(images) else images
    stats = GaussianStats(keep_features=keep_features)
    stats.update(extract_features(extractor, real, batch_size))
    save_reference_stats(cache_dir, key, stats, overwrite=cached is not None)
    return stats

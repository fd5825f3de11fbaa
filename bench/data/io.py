"""Reading images and masks from disk, resizing, and turning them into tensors.

Everything here works on plain numpy arrays; `to_sample_arrays` is the one place
where a real dataset's image and mask are resized and normalised, so every loader
treats pixels the same way.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.data.base import DataError

logger = logging.getLogger(__name__)

#: File extensions read as 2D images (lower case, compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")


def is_image_file(path: Path) -> bool:
    """True for regular files with an image extension (ISIC folders also hold LICENSE.txt etc.)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """Decode an image file.

    Args:
        path: image file (any format Pillow reads).
        channels: 3 for RGB (grey images are replicated), 1 for greyscale.

    Returns:
        float32 array (H, W, channels) with values in [0, 1] (16-bit images are scaled by 65535).

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if array.max() > 255 else 255.0
                array = (array / scale).astype(np.float32)
                array = np.repeat(array[..., None], channels, axis=2)
                return np.clip(array, 0.0, 1.0)
            im = im.convert("RGB" if channels == 3 else "L")
            array = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from exc
    return array if array.ndim == 3 else array[..., None]


def read_mask_array(path: Path) -> np.ndarray:
    """Decode a mask file to a 2D array of its raw values (first channel of RGB/RGBA masks).

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("L")
            array = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable mask ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 3:
        array = array[..., 0]
    return array


def binarise(values: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Foreground of a raw mask array as bool (H, W).

    Args:
        values: raw mask values (0/1, 0/255, bool, or anti-aliased 0..255).
        threshold: foreground is ``values > threshold``; ``None`` means half of the
            type's range for 8-bit masks (> 127) and ``> 0`` for others.
    """
    if values.dtype == bool:
        return values.copy()
    if threshold is None:
        threshold = 127 if values.dtype == np.uint8 and values.max() > 1 else 0
    return values > threshold


def read_mask(path: Path, threshold: float | None = None) -> np.ndarray:
    """Read a mask file and binarise it (see `binarise`). Returns bool (H, W)."""
    return binarise(read_mask_array(path), threshold)


def union_masks(paths: Iterable[Path], threshold: float | None = None) -> np.ndarray:
    """Union of several mask files of the same size (BUSI images with more than one lesion)."""
    union: np.ndarray | None = None
    for path in paths:
        mask = read_mask(path, threshold)
        if union is not None and mask.shape != union.shape:
            raise DataError(f"{path}: mask size {mask.shape[::-1]} differs from the other masks {union.shape[::-1]}")
        union = mask if union is None else union | mask
    if union is None:
        raise DataError("union_masks: no mask files given")
    return union


def non_binary_values(values: np.ndarray) -> list[int] | None:
    """The distinct values of a mask that is not two-valued, or None when it is binary.

    A mask is binary when it has at most two distinct values and, if two, one of them is 0.
    """
    distinct = np.unique(values)
    if len(distinct) <= 1 or (len(distinct) == 2 and distinct[0] == 0):
        return None
    return [int(v) for v in distinct[:8]]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of (H, W, C) float [0, 1] to (size, size, C): a squash, as the papers do."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).clamp_(0, 1).numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool (H, W) mask to (size, size)."""
    h, w = mask.shape
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    return mask[rows][:, cols]


def to_tensors(image: np.ndarray | None, mask: np.ndarray | None, size: int | None):
    """Resize (when ``size`` is set) and convert to the `Sample` tensors.

    Args:
        image: float (H, W, C) in [0, 1] or None.
        mask: bool (H, W) or None.
        size: output side length, or None to keep the native size.

    Returns:
        ``(image (C, size, size) float32 tensor | None, mask (size, size) bool tensor | None)``.
    """
    import torch

    if size is not None:
        image = resize_image(image, size) if image is not None else None
        mask = resize_mask(mask, size) if mask is not None else None
    image_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).contiguous() \
        if image is not None else None
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)) if mask is not None else None
    return image_t, mask_t


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from exc

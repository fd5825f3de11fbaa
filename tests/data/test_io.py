"""Image and mask reading, binarisation and resizing."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.data import io as dio
from bench.data.base import DataError


def test_binarise_conventions():
    assert dio.binarise(np.array([0, 1], dtype=np.uint8)).tolist() == [False, True]          # {0, 1} masks
    assert dio.binarise(np.array([0, 127, 128, 255], dtype=np.uint8)).tolist() == [False, False, True, True]
    assert dio.binarise(np.array([0, 3], dtype=np.int16)).tolist() == [False, True]
    assert dio.binarise(np.array([10, 200], dtype=np.uint8), threshold=100).tolist() == [False, True]


def test_non_binary_values():
    assert dio.non_binary_values(np.array([0, 255, 0], dtype=np.uint8)) is None
    assert dio.non_binary_values(np.array([0, 0], dtype=np.uint8)) is None
    assert dio.non_binary_values(np.array([0, 1, 2], dtype=np.uint8)) == [0, 1, 2]
    assert dio.non_binary_values(np.array([10, 255], dtype=np.uint8)) == [10, 255]


def test_read_image_modes(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    rgb = dio.read_image(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3) and np.allclose(rgb[..., 0], grey / 255.0)
    assert dio.read_image(tmp_path / "g.png", channels=1).shape == (3, 4, 1)
    Image.fromarray(grey.astype(np.uint16) * 250).save(tmp_path / "w.png")
    wide = dio.read_image(tmp_path / "w.png", channels=1)
    assert wide.max() <= 1.0 and np.isclose(wide[2, 3, 0], 220 * 250 / 65535, atol=1e-4)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"bad.png: unreadable image"):
        dio.read_image(tmp_path / "bad.png")


def test_resize_mask_nearest_and_image_range():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    big = dio.resize_mask(mask, 8)
    assert big[:4, :4].all() and not big[4:, :].any() and not big[:, 4:].any()
    image = np.random.default_rng(0).random((10, 6, 3)).astype(np.float32)
    out = dio.resize_image(image, 5)
    assert out.shape == (5, 5, 3) and out.min() >= 0 and out.max() <= 1
    image_t, mask_t = dio.to_tensors(image, np.ones((10, 6), bool), 5)
    assert tuple(image_t.shape) == (3, 5, 5) and tuple(mask_t.shape) == (5, 5) and mask_t.all()


def test_union_masks_size_check(tmp_path):
    Image.fromarray(np.full((3, 3), 255, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="b.png: mask size"):
        dio.union_masks([tmp_path / "a.png", tmp_path / "b.png"])

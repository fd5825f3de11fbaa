"""The generic pretraining world: determinism, held-out pairings, masks, captions."""
import numpy as np
import pytest

from bench.data.base import DataError
from bench.data.generic_world import HELD_OUT_PAIRS, GenericWorld, render_scene, word_positions


def test_scenes_are_deterministic_and_masks_disjoint():
    a, b = render_scene(7, "train", 11, 32), render_scene(7, "train", 11, 32)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2]
    image, objects, caption = render_scene(7, "train", 12, 32, n_objects=2)
    assert image.shape == (32, 32, 3) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert not (objects[0].mask & objects[1].mask).any() and all(o.mask.sum() > 4 for o in objects)
    xs = [np.nonzero(o.mask)[1].mean() for o in objects]
    assert xs[0] < xs[1]  # caption order is left to right
    words = caption.split()
    for obj, pos in zip(objects, word_positions(objects)):
        assert words[pos["colour"]] == obj.colour and words[pos["shape"]] == obj.shape


def test_held_out_pairs_split():
    held = set(HELD_OUT_PAIRS)
    for i in range(200):
        _, objects, _ = render_scene(7, "train", i, 16)
        assert not any((o.colour, o.shape) in held for o in objects)
        _, objects, _ = render_scene(7, "test", i, 16)
        assert any((o.colour, o.shape) in held for o in objects)


def test_dataset_samples():
    ds = GenericWorld(sizes={"test": 3})
    sample = ds.load("test")[1]
    assert sample.image.shape == (3, 32, 32) and sample.meta["object_masks"].shape[1:] == (32, 32)
    assert sample.mask.equal(sample.meta["object_masks"].any(0))
    with pytest.raises(DataError, match="unknown option"):
        GenericWorld(colour="red")

import numpy as np
import pytest
import torch

from bench.data.base import DataError
from bench.data.derm_mini import CLASS_NAMES, DermMini, render


def test_deterministic_and_prefix_stable():
    a = DermMini(sizes={"train": 20}).load("train")
    b = DermMini(sizes={"train": 40}).load("train")
    assert torch.equal(a[7].image, b[7].image) and torch.equal(a[7].mask, b[7].mask)
    assert a[7].meta == b[7].meta
    c = DermMini(sizes={"train": 20}, world_seed=1).load("train")
    assert not torch.equal(a[7].image, c[7].image)


def test_sample_layout():
    s = DermMini(image_size=48).load("test")[3]
    assert s.image.shape == (3, 48, 48) and s.image.dtype == torch.float32
    assert 0 <= s.image.min() and s.image.max() <= 1
    assert s.mask.dtype == torch.bool and s.mask.shape == (48, 48) and s.mask.any()
    assert CLASS_NAMES[s.label] == s.meta["class_name"]
    assert s.prompt.startswith("An image of lesion on skin.")
    assert s.meta["id"] == "dm-2018-test-00003"


def test_splits_are_disjoint_and_checksummed():
    ds = DermMini(sizes={"train": 10, "val": 5, "test": 5})
    ids = [set(ds.split_ids(s)) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ds.split_checksum("train") != DermMini(sizes={"train": 11}).split_checksum("train")
    assert ds.split_checksum("train") != DermMini(sizes={"train": 10}, image_size=32).split_checksum("train")
    assert DermMini(sizes={"train": 0}).split_ids("train") == []


def test_class_imbalance_and_low_contrast_rate_follow_the_design():
    metas = [render(2018, 0, i, 32)[2] for i in range(600)]
    labels = np.array([m["label"] for m in metas])
    nv = (labels == CLASS_NAMES.index("NV")).mean()
    assert 0.6 < nv < 0.74  # HAM10000: 66.9 %
    assert len(set(labels.tolist())) == 7
    low = np.mean([m["low_contrast"] for m in metas])
    assert 0.16 < low < 0.29  # ISIC 2018 Task 1: 569 / 2594 = 21.9 %
    assert all(m["low_contrast"] == (m["ita_diff"] < 30) for m in metas)


def test_lesion_region_mean_colour_realises_the_designed_ita():
    """The lesion's mean L*, b* over the mask give the designed ITA (before artefacts and soft edges)."""
    from skimage.color import rgb2lab

    errors = []
    for i in range(60):
        image, mask, meta = render(2018, 0, i, 64)
        if meta["hair"] or meta["vignette"] or meta["ruler"]:
            continue
        lab = rgb2lab(image.astype(np.float64))
        inner = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)
        if inner.sum() < 20:
            continue
        L, b = lab[..., 0][inner].mean(), lab[..., 2][inner].mean()
        errors.append(abs(np.degrees(np.arctan((L - 50) / b)) - meta["ita_lesion"]))
    assert len(errors) > 15 and np.median(errors) < 5.0


def test_bad_options():
    with pytest.raises(DataError, match="unknown option"):
        DermMini(colour="red")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        DermMini(sizes={"dev": 3})
    with pytest.raises(DataError, match="image_size must be an integer >= 16"):
        DermMini(image_size=8)
    with pytest.raises(DataError, match="has no split 'dev'"):
        DermMini().split_ids("dev")


# -- difficulty (issue 23) ---------------------------------------------------------------------------------------
def _world_digest(difficulty=None, n=30):
    import hashlib

    h = hashlib.sha256()
    for split in (0, 1, 2):
        for i in range(n):
            image, mask, meta = render(2018, split, i, 64, difficulty)
            h.update(np.round(image * 255).astype(np.uint8).tobytes())
            h.update(mask.tobytes())
            h.update(repr(sorted((k, v) for k, v in meta.items() if isinstance(v, (bool, int, str)))).encode())
    return h.hexdigest()


def test_default_difficulty_is_the_original_world_byte_for_byte():
    """Digest of the world rendered by the code before the difficulty knobs existed (commit 36def19)."""
    from bench.data.derm_mini import Difficulty

    original = "d815ced0d07e13d892c66085cad59b4c1912624649f650b44a590517e31e1063"
    assert _world_digest(None) == original
    assert _world_digest(Difficulty()) == original
    assert Difficulty.level(0) == Difficulty()
    assert DermMini().split_checksum("train") == DermMini(difficulty="default").split_checksum("train")
    assert DermMini(difficulty={"border": 1.0}).split_checksum("test") == DermMini().split_checksum("test")


def test_harder_worlds_keep_masks_and_labels_and_change_the_checksum():
    from bench.data.derm_mini import Difficulty

    hard = Difficulty.level(1.0)
    for i in range(8):
        easy_img, easy_mask, easy_meta = render(2018, 0, i, 64)
        img, mask, meta = render(2018, 0, i, 64, hard)
        assert meta["label"] == easy_meta["label"]  # the class draw comes first and is untouched
        assert not np.array_equal(img, easy_img)
        assert 0 <= img.min() and img.max() <= 1 and mask.any()
        assert meta["distractors"] >= 0
    ds = DermMini(difficulty={"level": 0.5})
    assert ds.split_checksum("train") != DermMini().split_checksum("train")
    assert ds.load("train")[0].image.shape == (3, 64, 64)
    # the low-contrast share follows its knob
    metas = [render(2018, 0, i, 32, Difficulty(low_contrast_rate=0.8))[2] for i in range(200)]
    assert 0.7 < np.mean([m["low_contrast"] for m in metas]) < 0.9


def test_distractor_spots_stay_outside_the_mask():
    from bench.data.derm_mini import Difficulty

    spotted = Difficulty(distractors=6.0)
    changed = 0
    for i in range(10):
        base, mask, _ = render(2018, 0, i, 64)  # the same world without the spots
        img, mask2, meta = render(2018, 0, i, 64, spotted)
        assert np.array_equal(mask, mask2)
        if meta["distractors"]:
            changed += 1
            inside = np.abs(img - base).max(-1)[mask]
            assert inside.max() < 0.02  # painted on skin, not on the lesion
    assert changed >= 5


def test_bad_difficulty():
    with pytest.raises(DataError, match="unknown difficulty preset 'hardest'"):
        DermMini(difficulty="hardest")
    with pytest.raises(DataError, match="unknown difficulty knob"):
        DermMini(difficulty={"blur": 2})
    with pytest.raises(DataError, match="non-negative number"):
        DermMini(difficulty={"border": -1})
    with pytest.raises(DataError, match="level must be in"):
        DermMini(difficulty={"level": 5})
    with pytest.raises(DataError, match="low_contrast_rate must be in"):
        DermMini(difficulty={"low_contrast_rate": 2})


def test_ph2_mini_is_world_7_in_ph2_size_under_its_own_ids():
    """MedDiff-FT Table 1's PH2 twin: the world that stands in for PH2 as seg-aug's transfer set, as a dataset
    with its own 60/20/20 splits of PH2's 200 images."""
    from bench.data.derm_mini import Ph2Mini
    from bench.registry import DATASETS

    ph2 = DATASETS.get("ph2-mini")(image_size=32)
    assert isinstance(ph2, Ph2Mini) and ph2.sizes == {"train": 120, "val": 40, "test": 40}
    world7 = DermMini(image_size=32, world_seed=7)
    a, b = ph2.load("test")[5], world7.load("test")[5]
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert a.meta["id"] == "p2m-7-test-00005" and a.meta["world"]["dataset"] == "ph2-mini"
    assert ph2.split_checksum("test") != world7.split_checksum("test")
    with pytest.raises(DataError, match="ph2-mini: unknown split 'dev'"):
        Ph2Mini(sizes={"dev": 3})
    from baselines.world_oracle.method import WORLD_SAMPLERS
    assert "ph2-mini" in WORLD_SAMPLERS

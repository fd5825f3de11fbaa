"""busi-mini and ddti-mini (issue 21): procedural breast / thyroid ultrasound with exact masks, cases and spacing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.world_oracle import WorldOracle
from bench.data.base import DataError
from bench.data.ultrasound_mini import BREAST, CLASS_NAMES, THYROID, BusiMini, DdtiMini, _case_class, render
from bench.interface import Condition, RunContext
from bench.registry import DATASETS


@pytest.mark.parametrize("cls", [BusiMini, DdtiMini])
def test_deterministic_prefix_stable_and_registered(cls):
    assert DATASETS.get(cls.id) is cls
    a = cls(sizes={"train": 6}, image_size=32).load("train")
    b = cls(sizes={"train": 12}, image_size=32).load("train")
    assert a.ids == b.ids[:6]
    for i in (0, 4):
        assert torch.equal(a[i].image, b[i].image) and torch.equal(a[i].mask, b[i].mask)
    other = cls(sizes={"train": 6}, image_size=32, world_seed=1).load("train")
    assert not torch.equal(a[0].image, other[0].image)


@pytest.mark.parametrize("cls", [BusiMini, DdtiMini])
def test_sample_layout_cases_and_spacing(cls):
    ds = cls(sizes={"train": 10, "val": 4, "test": 4}, image_size=32)
    s = ds.load("train")[0]
    assert s.image.shape == (3, 32, 32) and s.image.dtype == torch.float32
    assert 0 <= s.image.min() and s.image.max() <= 1 and torch.equal(s.image[0], s.image[2])  # grey as RGB
    assert s.mask.dtype == torch.bool and s.mask.shape == (32, 32)
    assert CLASS_NAMES[s.label] == s.meta["class_name"] and s.prompt.startswith("an ultrasound image of")
    assert isinstance(s.meta["case"], str) and s.meta["id"].startswith(s.meta["case"])
    sp = s.meta["spacing"]
    assert isinstance(sp, tuple) and len(sp) == 2 and all(isinstance(v, float) for v in sp)
    # ~0.06-0.1 mm per pixel at BUSI's native ~500 px; scaled with the delivered size
    assert all(0.05 < v * 32 / 500 < 0.11 for v in sp)
    big = cls(sizes={"train": 1}, image_size=64).load("train")[0]
    assert big.meta["spacing"] == pytest.approx(tuple(v / 2 for v in sp))
    assert cls(sizes={"train": 1}, image_size=32, channels=1).load("train")[0].image.shape == (1, 32, 32)
    # cases never straddle splits; a case holds one or more views
    cases = {split: {x.meta["case"] for x in ds.load(split)} for split in ("train", "val", "test")}
    assert not (cases["train"] & cases["val"] or cases["train"] & cases["test"] or cases["val"] & cases["test"])


def test_views_of_a_case_share_class_and_spacing():
    samples = DdtiMini(sizes={"train": 30}, image_size=32).load("train")
    by_case: dict[str, list] = {}
    for s in samples:
        by_case.setdefault(s.meta["case"], []).append(s)
    assert max(len(v) for v in by_case.values()) > 1
    for views in by_case.values():
        assert len({v.label for v in views}) == 1 and len({v.meta["spacing"] for v in views}) == 1


@pytest.mark.parametrize("organ", [BREAST, THYROID])
def test_masks_exact_and_lesions_hypoechoic_normal_empty(organ):
    darker, seen = [], set()
    for case in range(40):
        image, mask, meta = render(organ, 2020, 0, case, 0, 48)
        seen.add(meta["class_name"])
        assert mask.dtype == bool
        if meta["class_name"] == "normal":
            assert not mask.any() and meta["area_ratio"] == 0
            continue
        assert mask.any() and meta["area_ratio"] == pytest.approx(mask.mean())
        ring = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        ring[max(0, ys.min() - 4):ys.max() + 5, max(0, xs.min() - 4):xs.max() + 5] = True
        ring &= ~mask
        darker.append(image[mask].mean() < image[ring].mean())
    assert seen == set(CLASS_NAMES)
    assert np.mean(darker) > 0.8  # hypoechoic lesions, aligned with their masks


def test_class_shares_follow_busi():
    labels = [render(BREAST, 2020, 0, c, 0, 16)[2]["label"] for c in range(6)]  # the class is the first draw:
    assert labels == [_case_class(np.random.default_rng([2020, 0, c, BREAST.code]), BREAST, BREAST.normal_rate)
                      for c in range(6)]
    labels = [_case_class(np.random.default_rng([2020, 0, c, BREAST.code]), BREAST, BREAST.normal_rate) for c in range(600)]
    shares = np.bincount(labels, minlength=3) / len(labels)
    assert abs(shares[2] - 133 / 780) < 0.05 and abs(shares[0] - 437 / 780) < 0.06


def test_bad_options():
    with pytest.raises(DataError, match="busi-mini: unknown option\\(s\\) colour; valid: sizes"):
        BusiMini(colour=1)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        DdtiMini(sizes={"dev": 3})
    with pytest.raises(DataError, match="normal_rate must be a number in \\[0, 1\\]"):
        DdtiMini(normal_rate=2)
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        BusiMini(channels=2)
    with pytest.raises(DataError, match="image_size must be an integer >= 16"):
        BusiMini(image_size=8)


def test_world_oracle_follows_the_given_mask_and_class():
    train = BusiMini(sizes={"train": 4}, image_size=32).load("train")
    gen = WorldOracle()
    gen.fit(train, RunContext(seed=1))
    lesion = next(s for s in train if s.mask.any())
    conds = [Condition(mask=lesion.mask, label=1, meta={"index": 0}),
             Condition(mask=torch.zeros(32, 32, dtype=torch.bool), meta={"index": 1})]
    out = list(gen.generate(conds, RunContext(seed=1)))
    assert torch.equal(out[0].mask, lesion.mask) and out[0].label == 1 and out[0].image.shape == (3, 32, 32)
    assert not any(torch.equal(out[0].image, s.image) for s in train)
    assert out[1].label == CLASS_NAMES.index("normal") and not out[1].mask.any()
    assert "malignant breast lesion" in out[0].prompt


def test_another_procedural_world_is_not_scored_as_a_transfer_set(caplog):
    from bench.data.derm_mini import DermMini
    from bench.tasks.common import procedural_beside_real

    assert procedural_beside_real(BusiMini(), DermMini(), "transfer dataset", "transfer_dataset")
    assert "another procedural world" in caplog.text
    assert not procedural_beside_real(DermMini(), DermMini(world_seed=7), "transfer dataset", "transfer_dataset")
    assert not procedural_beside_real(BusiMini(), BusiMini(world_seed=7), "transfer dataset", "transfer_dataset")

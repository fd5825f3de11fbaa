"""ct-spleen-mini and mri-prostate-mini (issue 21): procedural volumes sliced to 2D, case-level folds, spacing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.world_oracle import WorldOracle
from bench.data.base import DataError
from bench.data.volume_mini import (SELECTION_GRID, CtSpleenMini, MriProstateMini, case_params, foreground_counts,
                                    organ_mask, render_slice)
from bench.interface import Condition, RunContext
from bench.registry import DATASETS

SMALL = {"n_cases": 6}


@pytest.mark.parametrize("cls", [CtSpleenMini, MriProstateMini])
def test_deterministic_registered_and_layout(cls):
    assert DATASETS.get(cls.id) is cls
    a = cls(image_size=32, **SMALL).load("test")
    b = cls(image_size=32, **SMALL).load("test")
    assert a.ids == b.ids and len(a) > 0
    s, t = a[1], b[1]
    assert torch.equal(s.image, t.image) and torch.equal(s.mask, t.mask)
    assert s.image.shape == (1, 32, 32) and s.image.dtype == torch.float32 and 0 <= s.image.min() <= s.image.max() <= 1
    assert s.mask.dtype == torch.bool and s.mask.any() and s.prompt
    assert isinstance(s.meta["case"], str) and s.meta["id"] == f"{s.meta['case']}:z{s.meta['z']:03d}"
    assert cls(image_size=32, channels=3, **SMALL).load("test")[0].image.shape == (3, 32, 32)
    assert not torch.equal(cls(image_size=32, world_seed=5, **SMALL).load("test")[1].image, s.image)


@pytest.mark.parametrize("cls", [CtSpleenMini, MriProstateMini])
def test_case_level_folds_disjoint_and_covering(cls):
    tests = []
    for fold in range(3):
        ds = cls(fold=fold, **SMALL)
        cases = ds.split_cases()
        assert not (set(cases["train"]) & set(cases["val"]) or set(cases["train"]) & set(cases["test"])
                    or set(cases["val"]) & set(cases["test"]))
        assert sorted(cases["train"] + cases["val"] + cases["test"]) == ds.cases()
        assert cases["test"] == ds.cases()[2 * fold:2 * fold + 2]  # unshuffled KFold over the sorted cases
        tests += cases["test"]
        test_cases = {i.split(":")[0] for i in ds.split_ids("test")}
        assert test_cases <= set(cases["test"]) and not test_cases & {i.split(":")[0] for i in ds.split_ids("train")}
    assert sorted(tests) == cls(**SMALL).cases()  # the test folds cover every case once
    default = cls()
    assert 24 <= default.n_cases <= 30 and len(default.split_cases()["val"]) >= 1


@pytest.mark.parametrize("cls", [CtSpleenMini, MriProstateMini])
def test_slices_pass_the_foreground_threshold_and_masks_vary_smoothly(cls):
    ds = cls(image_size=SELECTION_GRID, n_cases=3, fold=0)
    samples = ds.load("train")
    assert len(samples) > 5
    for s in samples:
        assert int(s.mask.sum()) == s.meta["foreground_pixels"] > 20  # exact, at the 64-px grid
    counts = foreground_counts(cls.modality.name, 2022, 0)
    kept = [z for z, n in enumerate(counts) if n > 20]
    assert kept == list(range(kept[0], kept[-1] + 1))  # one contiguous run of slices through the organ
    assert len(cls(n_cases=3, min_foreground=60).split_ids("train")) < len(ds.split_ids("train"))
    # neighbouring slices overlap strongly: the mask varies smoothly over z
    masks = [render_slice(cls.modality.name, 2022, 0, z, 64)[1] for z in kept[len(kept) // 3:len(kept) // 3 + 2]]
    inter, union = (masks[0] & masks[1]).sum(), (masks[0] | masks[1]).sum()
    assert inter / union > 0.5
    # same ids at every image size (a generator's view repeats the segmenters' ids)
    assert cls(image_size=32, n_cases=3).split_ids("train") == ds.split_ids("train")


@pytest.mark.parametrize("cls,native", [(CtSpleenMini, (0.7, 0.9)), (MriProstateMini, (0.55, 0.7))])
def test_spacing_is_physical_and_scales_with_image_size(cls, native):
    small = cls(image_size=32, **SMALL).load("test")[0]
    large = cls(image_size=64, **SMALL).load("test")[0]
    sp = small.meta["spacing"]
    assert isinstance(sp, tuple) and len(sp) == 2 and all(isinstance(v, float) for v in sp)
    assert large.meta["spacing"] == pytest.approx(tuple(v / 2 for v in sp))
    assert native[0] <= sp[0] * 32 / cls.modality.native <= native[1]
    assert small.meta["slice_thickness"] > 2


def test_mask_is_the_organ_in_millimetres_and_brighter_organ_on_ct():
    p = case_params("ct", 2022, 1)
    image, mask, meta = render_slice("ct", 2022, 1, 14, 64)
    centres = ((np.arange(64) + 0.5) / 64 - 0.5) * p["fov"]
    x, y = np.meshgrid(centres, centres)
    assert np.array_equal(mask, organ_mask("ct", p, x, y, meta["z_mm"]))
    assert image[mask].mean() > np.median(image)  # enhanced spleen against air, fat and muscle


def test_bad_options():
    with pytest.raises(DataError, match="ct-spleen-mini: unknown option\\(s\\) sizes; valid: n_cases"):
        CtSpleenMini(sizes={"train": 3})
    with pytest.raises(DataError, match="fold must be in 0..2"):
        MriProstateMini(fold=3)
    with pytest.raises(DataError, match="2 cases cannot make 3 folds"):
        CtSpleenMini(n_cases=2)
    with pytest.raises(DataError, match="val_fraction must be a number"):
        CtSpleenMini(val_fraction=1.5)
    with pytest.raises(DataError, match="has no split 'dev'"):
        CtSpleenMini().split_ids("dev")


def test_world_oracle_paints_the_organ_on_the_given_mask():
    train = CtSpleenMini(image_size=32, **SMALL).load("train")
    gen = WorldOracle()
    gen.fit(train, RunContext(seed=2))
    cond = Condition(mask=train[3].mask, meta={"index": 0})
    out = next(gen.generate([cond], RunContext(seed=2)))
    assert torch.equal(out.mask, train[3].mask) and out.label is None and out.image.shape == (1, 32, 32)
    assert not any(torch.equal(out.image, s.image) for s in train)
    free = next(gen.generate([Condition(meta={"index": 1})], RunContext(seed=2)))
    assert free.mask.sum() > 0

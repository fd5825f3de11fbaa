"""BUSI and DDTI loaders on fixtures in their distributed layouts."""
from __future__ import annotations

import pytest

import data_layouts as L
from bench.data.base import DataError
from bench.data.ultrasound import BUSI, DDTI


def _busi(root):
    folder = root / "Dataset_BUSI_with_GT"
    for name, n in (("benign", 5), ("malignant", 3), ("normal", 2)):
        for k in range(1, n + 1):
            L.image(folder / name / f"{name} ({k}).png")
            box = (0, 0, 0, 0) if name == "normal" else (1, 1, 4, 4)
            L.mask(folder / name / f"{name} ({k})_mask.png", box=box)
    L.mask(folder / "benign" / "benign (1)_mask_1.png", box=(8, 6, 11, 9))  # a second lesion
    return folder


def test_busi_unites_masks_and_keeps_normal(tmp_path):
    _busi(tmp_path)
    data = BUSI(root=tmp_path)
    everything = data.load("all")
    assert len(everything) == 10
    first = everything[everything.ids.index("benign (1)")]
    assert int(first.mask.sum()) == 9 + 9 and first.meta["n_masks"] == 2 and first.label == 0
    normal = everything[everything.ids.index("normal (1)")]
    assert normal.label == 2 and not normal.mask.any() and normal.image.shape[0] == 3
    assert BUSI(root=tmp_path, channels=1).load("all")[0].image.shape[0] == 1
    assert len(BUSI(root=tmp_path, include_normal=False).split_ids("all")) == 8
    sizes = [len(data.split_ids(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 10 and sizes == [6, 2, 2]  # per class: 5 -> 3/1/1, 3 -> 1/1/1, 2 -> 2/0/0
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        BUSI(root=tmp_path, channels=2)


def test_busi_missing_and_unpaired_masks(tmp_path):
    folder = _busi(tmp_path)
    (folder / "malignant" / "malignant (2)_mask.png").unlink()
    L.mask(folder / "malignant" / "malignant (9)_mask.png")
    problems = [str(p) for p in BUSI(root=tmp_path).check() if "wrong count" not in p.what]
    assert problems == [f"{folder / 'malignant' / 'malignant (2).png'}: missing mask malignant (2)_mask.png",
                        f"{folder / 'malignant' / 'malignant (9)_mask.png'}: unpaired mask: no image with this id"]


def test_ddti_pairs_and_case_grouping(tmp_path):
    folder = tmp_path / "DDTI"
    for case in range(1, 6):
        for k in (1, 2):
            L.image(folder / "image" / f"{case}_{k}.PNG", mode="L")
            L.mask(folder / "mask" / f"{case}_{k}.PNG")
    data = DDTI(root=tmp_path, image_size=8)
    assert len(data.split_ids("all")) == 10
    split_of = {sid: s for s in ("train", "val", "test") for sid in data.split_ids(s)}
    for case in range(1, 6):
        assert split_of[f"{case}_1"] == split_of[f"{case}_2"]
    assert sorted(split_of.values()).count("test") == 2  # 5 cases: 3 / 1 / 1
    sample = data.load("all")[0]
    assert sample.image.shape == (3, 8, 8) and sample.mask.any()
    (folder / "mask" / "3_2.PNG").unlink()
    problems = [str(p) for p in DDTI(root=tmp_path).check() if "wrong count" not in p.what]
    assert problems == [f"{folder / 'image' / '3_2.PNG'}: missing mask mask/3_2.*"]

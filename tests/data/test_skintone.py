"""Fitzpatrick17k and DDI loaders on fixtures in their layouts."""
from __future__ import annotations

from collections import Counter

import data_layouts as L
from bench.data.skintone import DDI, SKIN_GROUPS, Fitzpatrick17k, fst_group


def test_fst_groups():
    assert [fst_group(f) for f in range(1, 7)] == ["I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI"]


def test_fitzpatrick17k_drops_unknown_fst_and_reports_missing_images(tmp_path):
    folder = L.fitzpatrick17k(tmp_path, n=20)
    data = Fitzpatrick17k(root=tmp_path, image_size=8)
    train, val = data.split_ids("train"), data.split_ids("val")
    assert len(train) == 16 and len(val) == 4 and not set(train) & set(val)
    # 20 known rows cycle FST 1..6: groups of 8 / 6 / 6 -> 20 % of each stratum in val.
    assert Counter(data.records[i].stratum for i in val) == {"I-II": 2, "III-IV": 1, "V-VI": 1}
    sample = data.load("train")[0]
    assert sample.label == SKIN_GROUPS.index(fst_group(sample.meta["fst"])) and sample.meta["label"] == "psoriasis"
    assert [str(p) for p in data.check(decode=False)] == [
        f"{folder / 'fitzpatrick17k.csv'}: wrong count: 22 rows, card expects 16577",
        f"{folder / 'images' / 'hmissing.jpg'}: missing image listed in fitzpatrick17k.csv",
    ]


def test_ddi_reads_metadata_next_to_images(tmp_path):
    folder = L.ddi(tmp_path, n=3)
    data = DDI(root=tmp_path, image_size=8)
    test = data.load("test")
    assert [s.label for s in test] == [0, 2, 1]
    assert test[1].meta["malignant"] is True and test[1].meta["disease"] == "melanoma-in-situ"
    L.image(folder / "000009.png")
    assert [str(p) for p in DDI(root=tmp_path).check()] == [
        f"{folder / '000009.png'}: unpaired image: not in ddi_metadata.csv",
        f"{folder}: wrong count: 3 samples, card expects 656",
        f"{folder}: wrong count: split 'test' has 3 samples, card expects 656",
    ]

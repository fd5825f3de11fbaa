"""ISIC 2016/2017/2018 and HAM10000 loaders on tiny folders in the distributed layouts."""
from __future__ import annotations

import pytest
import torch

import data_layouts as L
from bench.data.base import DataError
from bench.data.isic import Ham10000, Isic2016, Isic2017, Isic2018Task1, Isic2018Task3


def test_task1_loads_official_splits(tmp_path):
    L.isic2018_task1(tmp_path)
    data = Isic2018Task1(root=tmp_path, image_size=8)
    assert [len(data.split_ids(s)) for s in data.splits] == [3, 2, 2]
    sample = data.load("train")[0]
    assert sample.image.shape == (3, 8, 8) and sample.image.dtype == torch.float32
    assert 0.0 <= float(sample.image.min()) and float(sample.image.max()) <= 1.0
    assert sample.mask.dtype == torch.bool and sample.mask.any() and not sample.mask.all()
    assert sample.meta["id"] == "ISIC_0000000"
    # The only problems of a tiny copy are the counts, which the card fixes to the official sizes.
    problems = data.check()
    assert [p.what for p in problems] == [
        "wrong count: 7 samples, card expects 3694",
        "wrong count: split 'train' has 3 samples, card expects 2594",
        "wrong count: split 'val' has 2 samples, card expects 100",
        "wrong count: split 'test' has 2 samples, card expects 1000",
    ]


def test_task1_native_size_and_checksum_depends_on_ids(tmp_path):
    L.isic2018_task1(tmp_path)
    data = Isic2018Task1(root=tmp_path)
    assert data.load("val")[0].image.shape == (3, 10, 12)
    first = data.split_checksum("test")
    (tmp_path / "ISIC2018" / "ISIC2018_Task1-2_Test_Input" / "ISIC_0000006.jpg").unlink()
    (tmp_path / "ISIC2018" / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0000006_segmentation.png").unlink()
    assert Isic2018Task1(root=tmp_path).split_checksum("test") != first


def test_task3_labels_follow_card_order(tmp_path):
    L.isic2018_task3(tmp_path)
    data = Isic2018Task3(root=tmp_path, image_size=8)
    train = data.load("train")
    assert [s.label for s in train] == [2, 3, 4, 5]
    assert train[0].meta["class_name"] == "BCC" and train[0].meta["lesion_id"] == "HAM_0000001"
    assert len(data.load("test")) == 2


def test_task3_reports_bad_rows_and_unlisted_images(tmp_path):
    folder = L.isic2018_task3(tmp_path)
    L.image(folder / "ISIC2018_Task3_Validation_Input" / "ISIC_0099999.jpg")
    truth = folder / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    truth.write_text(truth.read_text().replace("ISIC_0024312,0.0,0.0", "ISIC_0024312,1.0,0.0"))
    whats = [str(p) for p in Isic2018Task3(root=tmp_path).check(decode=False)]
    assert any("ISIC_0099999.jpg: unpaired image: not in the ground-truth CSV" in w for w in whats)
    assert any("(ISIC_0024312): not one-hot" in w for w in whats)


def test_isic2017_ignores_superpixels_and_2016_carves_val(tmp_path):
    folder = tmp_path / "ISIC2017"
    for split, n in (("Training", 2), ("Validation", 1), ("Test_v2", 1)):
        for i in range(n):
            sid = f"ISIC_{len(list(folder.rglob('*.jpg'))):07d}"
            L.image(folder / f"ISIC-2017_{split}_Data" / f"{sid}.jpg")
            L.image(folder / f"ISIC-2017_{split}_Data" / f"{sid}_superpixels.png")
            L.mask(folder / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{sid}_segmentation.png")
    data = Isic2017(root=tmp_path)
    assert [len(data.split_ids(s)) for s in data.splits] == [2, 1, 1]
    assert not [p for p in data.check() if "wrong count" not in p.what]

    folder16 = tmp_path / "ISIC2016"
    for i in range(10):
        L.image(folder16 / "ISBI2016_ISIC_Part1_Training_Data" / f"ISIC_{i:07d}.jpg")
        L.mask(folder16 / "ISBI2016_ISIC_Part1_Training_GroundTruth" / f"ISIC_{i:07d}_Segmentation.png")
    L.image(folder16 / "ISBI2016_ISIC_Part1_Test_Data" / "ISIC_0000099.jpg")
    L.mask(folder16 / "ISBI2016_ISIC_Part1_Test_GroundTruth" / "ISIC_0000099_Segmentation.png")
    data16 = Isic2016(root=tmp_path)
    assert [len(data16.split_ids(s)) for s in data16.splits] == [9, 1, 1]
    assert sorted(Isic2016(root=tmp_path, val_seed=3).split_ids("val") + Isic2016(root=tmp_path, val_seed=3)
                  .split_ids("train")) == sorted(data16.split_ids("val") + data16.split_ids("train"))
    with pytest.raises(DataError, match="unknown option.*val_seeds"):
        Isic2016(root=tmp_path, val_seeds=1)


def _ham(tmp_path, with_masks=True):
    folder = tmp_path / "HAM10000"
    rows = []
    dxs = ["nv", "mel", "bkl", "nv", "nv", "bcc", "akiec", "df", "vasc", "nv"]
    for i, dx in enumerate(dxs):
        sid = f"ISIC_{24306 + i:07d}"
        L.image(folder / f"HAM10000_images_part_{1 + i % 2}" / f"{sid}.jpg")
        if with_masks:
            L.mask(folder / "HAM10000_segmentations_lesion_tschandl" / f"{sid}_segmentation.png")
        rows.append([f"HAM_{i // 2:07d}", sid, dx, "histo", "" if i == 0 else 45.0, "male", "back", "vidir_modern"])
    L.write_csv(folder / "HAM10000_metadata.csv",
                ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"], rows)
    return folder


def test_ham10000_metadata_masks_and_lesion_grouped_split(tmp_path):
    _ham(tmp_path)
    data = Ham10000(root=tmp_path, image_size=8, require_masks=True)
    everything = data.load("all")
    assert len(everything) == 10
    first = everything[0]
    assert first.label == 1 and first.meta["dx"] == "nv" and first.meta["age"] is None and first.mask is not None
    split_of = {sid: s for s in ("train", "val", "test") for sid in data.split_ids(s)}
    assert sorted(split_of) == sorted(everything.ids)
    for rec in data.records.values():  # images of one lesion never straddle two splits
        partners = [r.id for r in data.records.values() if r.group == rec.group]
        assert len({split_of[p] for p in partners}) == 1
    assert data.check() == [type(data.check()[0])(str(data.folder), "wrong count: 10 samples, card expects 10015")]


def test_ham10000_missing_mask_is_reported_and_required(tmp_path):
    folder = _ham(tmp_path)
    (folder / "HAM10000_segmentations_lesion_tschandl" / "ISIC_0024307_segmentation.png").unlink()
    problems = [str(p) for p in Ham10000(root=tmp_path).check(decode=False)]
    assert any(p.endswith("ISIC_0024307.jpg: missing mask HAM10000_segmentations_lesion_tschandl/"
                          "ISIC_0024307_segmentation.png") for p in problems)
    data = Ham10000(root=tmp_path, require_masks=True)
    split = next(s for s in ("train", "val", "test") if "ISIC_0024307" in data.split_ids(s))
    with pytest.raises(DataError, match="have no mask"):
        data.load(split)

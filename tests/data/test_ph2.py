"""PH2: the official release layout, the flat copy, the committed split, and the real copy in ../shared/data."""
from __future__ import annotations

from collections import Counter

import pytest
from typer.testing import CliRunner

import data_layouts as L
from bench.data.base import DataError
from bench.data.cards import file_sha256, load_card, split_file
from bench.data.cli import app
from bench.data.ph2 import PH2, parse_ph2_txt
from bench.data.validate import verify_samples


def test_official_layout_txt_and_01_bmp_masks(tmp_path):
    folder = L.ph2_official(tmp_path, ["IMD002", "IMD003", "IMD437"], [1, 0, 2])
    rows, problems = parse_ph2_txt(folder / "PH2_dataset.txt")
    assert not problems and rows["IMD437"]["histological_diagnosis"] == "Melanoma"
    assert rows["IMD002"]["colors"] == ["Light-Brown", "Dark-Brown"] and rows["IMD002"]["blue_whitish_veil"] == "P"
    data = PH2(root=tmp_path, image_size=8)
    assert data.folder == folder
    everything = data.load("all")
    assert [s.label for s in everything] == [1, 0, 2]
    assert everything[0].mask.sum() > 0 and everything[0].meta["clinical_diagnosis"] == "atypical_nevus"
    # The committed split names 200 ids; a 3-image copy cannot serve it, and says so.
    with pytest.raises(DataError, match="id\\(s\\) of split 'train' not found"):
        data.split_ids("train")
    problems = [p.what for p in data.check(decode=False)]
    assert "id 'IMD004' of split 'test' has no files" in problems or any("has no files" in p for p in problems)


def test_flat_layout_missing_label_row(tmp_path):
    folder = L.ph2_flat(tmp_path, ["IMD002", "IMD003"], ["common_nevus", "melanoma"])
    L.image(folder / "images" / "IMD010.png")
    L.mask(folder / "masks" / "IMD010_lesion.png")
    problems = [str(p) for p in PH2(root=tmp_path).check()]
    assert f"{folder / 'images' / 'IMD010.png'}: no row for IMD010 in ph2_labels.csv" in problems


def test_committed_split_is_stratified_and_matches_card():
    card = load_card("ph2")
    assert file_sha256(split_file("ph2")) == card["split_file"]["sha256"]
    from bench.data.splits import read_split_csv

    splits = read_split_csv(split_file("ph2"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 120, "val": 20, "test": 60}


@pytest.fixture
def ph2_real(shared_data):
    return shared_data / "dermoscopy"


def test_real_copy_loads_and_checks(ph2_real):
    data = PH2(root=ph2_real, image_size=32)
    sizes = {s: len(data.split_ids(s)) for s in data.splits}
    assert sizes == {"train": 120, "val": 20, "test": 60, "all": 200}
    labels = Counter(data.records[i].meta["clinical_diagnosis"] for i in data.split_ids("test"))
    assert labels == {"common_nevus": 24, "atypical_nevus": 24, "melanoma": 12}
    sample = data.load("test")[0]
    assert sample.image.shape == (3, 32, 32) and sample.mask.dtype.is_floating_point is False
    assert 0.02 < float(sample.mask.float().mean()) < 0.98
    verify_samples(data.load("val"))
    result = CliRunner().invoke(app, ["check", "ph2", "--root", str(ph2_real)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "0 problems"

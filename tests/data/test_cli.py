"""`bench data list | info | check`, and one broken fixture per bad-input case, each with its one-line error."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import data_layouts as L
from bench.data.cli import app

runner = CliRunner()


def _check(name, root, *extra):
    result = runner.invoke(app, ["check", name, "--root", str(root), *extra])
    lines = result.output.strip().splitlines()
    return result.exit_code, lines


def _problems(lines):
    """Problem lines without the count-against-card lines a tiny fixture always has."""
    return [line for line in lines[:-1] if "wrong count" not in line]


@pytest.fixture
def task1(tmp_path):
    return L.isic2018_task1(tmp_path)


def test_list_and_info():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    for name in ("isic2018-task1", "isic2018-task3", "ham10000", "ph2", "derm7pt", "isic2016", "isic2017",
                 "fitzpatrick17k", "ddi", "busi", "ddti", "msd-spleen", "msd-prostate", "mimic-cxr", "iu-xray",
                 "covid-cxr", "disendiff", "break-a-scene"):
        assert name in names
    info = runner.invoke(app, ["info", "busi"])
    assert info.exit_code == 0 and "Dataset_BUSI_with_GT" in info.output and "seed: 2020" in info.output
    assert runner.invoke(app, ["info", "bussi"]).exit_code == 2


def test_check_counts_only_problems_are_reported_with_total(task1, tmp_path):
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1
    assert lines[-1] == "4 problems"
    assert lines[0].endswith("ISIC2018: wrong count: 7 samples, card expects 3694")


def test_missing_folder(tmp_path):
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1 and len(lines) == 2 and lines[1] == "1 problem"
    assert lines[0].startswith(f"{tmp_path}: missing folder ISIC2018/ or isic2018/")


def test_missing_split_folder(task1, tmp_path):
    for path in (task1 / "ISIC2018_Task1_Test_GroundTruth").iterdir():
        path.unlink()
    (task1 / "ISIC2018_Task1_Test_GroundTruth").rmdir()
    code, lines = _check("isic2018-task1", tmp_path, "--quick")
    assert code == 1
    assert f"{task1 / 'ISIC2018_Task1_Test_GroundTruth'}: missing folder" in lines


def test_missing_mask_and_unpaired_mask(task1, tmp_path):
    (task1 / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png").unlink()
    L.mask(task1 / "ISIC2018_Task1_Validation_GroundTruth" / "ISIC_0000042_segmentation.png")
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1
    assert _problems(lines) == [
        f"{task1 / 'ISIC2018_Task1-2_Training_Input' / 'ISIC_0000001.jpg'}: missing mask "
        "ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png",
        f"{task1 / 'ISIC2018_Task1_Validation_GroundTruth' / 'ISIC_0000042_segmentation.png'}: "
        "unpaired mask: no image with this id",
    ]


def test_unreadable_image(task1, tmp_path):
    bad = task1 / "ISIC2018_Task1-2_Test_Input" / "ISIC_0000005.jpg"
    bad.write_bytes(b"not a jpeg")
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1
    (line,) = _problems(lines)
    assert line.startswith(f"{bad}: unreadable image (")


def test_non_binary_mask(task1, tmp_path):
    path = task1 / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000002_segmentation.png"
    values = np.zeros((10, 12), dtype=np.uint8)
    values[2:5, 2:5] = 255
    values[6:8, 6:8] = 128
    Image.fromarray(values, "L").save(path)
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1
    assert _problems(lines) == [f"{path}: non-binary mask: values [0, 128, 255]"]


def test_size_mismatch(task1, tmp_path):
    path = task1 / "ISIC2018_Task1_Validation_GroundTruth" / "ISIC_0000003_segmentation.png"
    L.mask(path, size=(14, 10))
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 1
    assert _problems(lines) == [f"{path}: size mismatch: mask 14x10, image 12x10"]


def test_wrong_counts_against_card_pass_when_counts_match(tmp_path, monkeypatch):
    folder = L.isic2018_task1(tmp_path)
    from bench.data import cards

    card = dict(cards.load_card("isic2018-task1"))
    card["splits"] = {"train": {"count": 3}, "val": {"count": 2}, "test": {"count": 2}}
    card["count_total"] = 7
    monkeypatch.setattr("bench.data.real.load_card", lambda _id: card)
    code, lines = _check("isic2018-task1", tmp_path)
    assert code == 0, lines
    assert lines[-1] == "0 problems" and re.match(r"isic2018-task1: OK \(train 3, val 2, test 2\)", lines[0])
    assert str(folder) in lines[0]


def test_split_export_matches_loader(tmp_path):
    L.isic2018_task1(tmp_path)
    out = tmp_path / "split.csv"
    result = runner.invoke(app, ["split", "isic2018-task1", "--root", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0
    from bench.data.isic import Isic2018Task1

    data = Isic2018Task1(root=tmp_path)
    assert out.read_text().splitlines()[1:] == [f"{sid},{s}" for s in data.splits for sid in data.split_ids(s)]
    assert f"test: 2 ids, checksum {data.split_checksum('test')}" in result.output

"""verify_samples: a corrupt image stops a run, with the file named, before any training."""
from __future__ import annotations

import pytest

import data_layouts as L
from bench.data.base import DataError
from bench.data.isic import Isic2018Task1
from bench.data.validate import verify_samples


def test_passes_on_good_files_and_names_the_corrupt_one(tmp_path):
    folder = L.isic2018_task1(tmp_path)
    data = Isic2018Task1(root=tmp_path, image_size=8)
    verify_samples(data.load("train"))
    bad = folder / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError) as info:
        verify_samples(Isic2018Task1(root=tmp_path, image_size=8).load("train"))
    message = str(info.value)
    assert message.startswith(f"{bad}: unreadable image") and "\n" not in message


def test_counts_many_failures_in_one_line(tmp_path):
    folder = L.isic2018_task1(tmp_path)
    for i in range(3):
        (folder / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"unreadable mask .*\[3 of 3 samples unreadable; also: .*ISIC_0000001_seg"):
        verify_samples(Isic2018Task1(root=tmp_path).load("train"), max_listed=2)


def test_materialises_sequences_without_files():
    from bench.data.derm_mini import DermMini

    verify_samples(DermMini(sizes={"train": 2, "val": 0, "test": 0}).load("train"))

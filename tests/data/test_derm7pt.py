"""Derm7pt: meta.csv, official index files, and the mapping to HAM classes (987 retained cases in the thesis)."""
from __future__ import annotations

import data_layouts as L
from bench.data.derm7pt import DIAGNOSIS_TO_HAM, DROPPED, Derm7pt
from bench.data.isic import HAM_CLASSES


def test_mapping_covers_every_derm7pt_diagnosis():
    diagnoses = {"basal cell carcinoma", "blue nevus", "clark nevus", "combined nevus", "congenital nevus",
                 "dermal nevus", "dermatofibroma", "lentigo", "melanoma", "melanoma (in situ)",
                 "melanoma (less than 0.76 mm)", "melanoma (0.76 to 1.5 mm)", "melanoma (more than 1.5 mm)",
                 "melanoma metastasis", "melanosis", "miscellaneous", "recurrent nevus", "reed or spitz nevus",
                 "seborrheic keratosis", "vascular lesion"}
    assert set(DIAGNOSIS_TO_HAM) | set(DROPPED) == diagnoses
    assert set(DIAGNOSIS_TO_HAM.values()) == set(HAM_CLASSES) - {"AKIEC"}


def test_fixture_drops_unmapped_and_keeps_official_split(tmp_path):
    folder = tmp_path / "release_v0"
    diagnoses = ["clark nevus", "melanoma (in situ)", "melanosis", "seborrheic keratosis", "miscellaneous",
                 "basal cell carcinoma"]
    header = ["case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
              "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
              "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic", "derm"]
    rows = []
    for i, dx in enumerate(diagnoses, start=1):
        rows.append([i, dx, 1, "typical", "absent", "absent", "absent", "regular", "absent", "absent", "low",
                     "flat", "back", "female", "excision", f"Aaa/clin{i}.jpg", f"Aaa/derm{i}.jpg"])
        L.image(folder / "images" / "Aaa" / f"derm{i}.jpg")
        L.image(folder / "images" / "Aaa" / f"clin{i}.jpg")
    L.write_csv(folder / "meta" / "meta.csv", header, rows)
    L.write_csv(folder / "meta" / "train_indexes.csv", ["indexes"], [[0], [1], [2]])
    L.write_csv(folder / "meta" / "valid_indexes.csv", ["indexes"], [[3]])
    L.write_csv(folder / "meta" / "test_indexes.csv", ["indexes"], [[4], [5]])
    data = Derm7pt(root=tmp_path, image_size=8)
    assert data.split_ids("all") == ["1", "2", "4", "6"]  # meta.csv's case_num
    assert data.split_ids("train") == ["1", "2"] and data.split_ids("test") == ["6"]
    samples = data.load("all")
    assert [HAM_CLASSES[s.label] for s in samples] == ["NV", "MEL", "BKL", "BCC"]
    assert samples[1].meta["diagnosis"] == "melanoma (in situ)" and samples[1].meta["path"].endswith("derm2.jpg")
    assert Derm7pt(root=tmp_path, image="clinic").load("all")[0].meta["path"].endswith("clin1.jpg")
    assert [p.what for p in data.check()] == ["wrong count: 4 samples, card expects 987"]

"""MIMIC-CXR-JPG, IU X-ray (reports from the torchxrayvision wheel) and the COVID-19 collection."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

import data_layouts as L
from bench.data.base import DataError
from bench.data.cli import app
from bench.data.cxr import CHEXPERT_LABELS, CovidCxr, IuXray, MimicCxr, iu_reports_archive, read_iu_reports, section_report

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 There is a small left pleural effusion.  No pneumothorax.
 The heart size is normal.

 IMPRESSION:
 Small left pleural effusion.
"""


def test_section_report_finds_findings_and_impression():
    sections = section_report(REPORT)
    assert sections["findings"] == "There is a small left pleural effusion. No pneumothorax. The heart size is normal."
    assert sections["impression"] == "Small left pleural effusion."
    assert sections["indication"] == "___F with cough"
    assert section_report("FINDINGS AND IMPRESSION: Clear lungs.")["impression"] == "Clear lungs."


def _mimic(root):
    jpg = root / "mimic-cxr-jpg" / "2.0.0"
    rows = [("d1", "50000001", "10000032", "train", "PA"), ("d2", "50000001", "10000032", "train", "LATERAL"),
            ("d3", "50000002", "11000001", "validate", "PA"), ("d4", "50000003", "19000002", "test", "PA"),
            ("d5", "50000004", "19000003", "test", "AP")]
    L.write_csv(jpg / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"],
                [[d, st, su, sp] for d, st, su, sp, _ in rows], gz=True)
    L.write_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "ViewPosition"],
                [[d, su, st, v] for d, st, su, _, v in rows], gz=True)
    labels = {"50000001": {"Pleural Effusion": 1.0, "Pneumothorax": 0.0, "Edema": -1.0},
              "50000002": {"No Finding": 1.0}, "50000003": {}, "50000004": {"Cardiomegaly": 1.0}}
    L.write_csv(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT_LABELS],
                [[su, st, *[labels[st].get(c, "") for c in CHEXPERT_LABELS]]
                 for st, su in {(r[1], r[2]) for r in rows}], gz=True)
    for d, st, su, _, _ in rows:
        L.image(jpg / "files" / f"p{su[:2]}" / f"p{su}" / f"s{st}" / f"{d}.jpg", mode="L")
    report = root / "mimic-cxr" / "2.0.0" / "files" / "p10" / "p10000032" / "s50000001.txt"
    report.parent.mkdir(parents=True)
    report.write_text(REPORT)
    return jpg


def test_mimic_official_split_views_labels_and_reports(tmp_path):
    jpg = _mimic(tmp_path)
    data = MimicCxr(root=tmp_path, image_size=8)
    assert data.folder == jpg
    assert [data.split_ids(s) for s in data.splits] == [["d1"], ["d3"], ["d4"]]
    sample = data.load("train")[0]
    assert sample.image.shape == (1, 8, 8)
    hot = dict(zip(CHEXPERT_LABELS, sample.labels.tolist()))
    assert hot["Pleural Effusion"] == 1.0 and hot["Edema"] == 0.0 and sum(hot.values()) == 1.0
    raw = dict(zip(CHEXPERT_LABELS, sample.meta["chexpert"]))
    assert raw["Edema"] == -1.0 and raw["Pneumothorax"] == 0.0 and raw["Atelectasis"] is None
    assert sample.report == "There is a small left pleural effusion. No pneumothorax. The heart size is normal. " \
                            "Small left pleural effusion."
    ones = MimicCxr(root=tmp_path, uncertain="one", views=["PA", "AP"])
    assert ones.load("train")[0].labels[CHEXPERT_LABELS.index("Edema")] == 1.0
    assert ones.split_ids("test") == ["d4", "d5"]
    assert MimicCxr(root=tmp_path, require_report=True).split_ids("test") == []
    (jpg / "files" / "p19" / "p19000002" / "s50000003" / "d4.jpg").unlink()
    assert [str(p) for p in MimicCxr(root=tmp_path).check()] == [
        f"{jpg / 'mimic-cxr-2.0.0-split.csv.gz'}: wrong count: 2 rows of split 'train', card expects 368960",
        f"{jpg / 'mimic-cxr-2.0.0-split.csv.gz'}: wrong count: 2 rows of split 'test', card expects 5159",
        f"{jpg / 'mimic-cxr-2.0.0-split.csv.gz'}: wrong count: 1 rows of split 'validate', card expects 2991",
        f"{jpg / 'files' / 'p19' / 'p19000002' / 's50000003' / 'd4.jpg'}: missing image listed in the split CSV",
    ]


def test_mimic_code_split_rule_puts_folder_p19_in_test(tmp_path):
    jpg = _mimic(tmp_path)
    split = jpg / "mimic-cxr-2.0.0-split.csv.gz"
    rows = [["d1", "50000001", "10000032", "test"], ["d2", "50000001", "10000032", "train"],
            ["d3", "50000002", "11000001", "validate"], ["d4", "50000003", "19000002", "train"],
            ["d5", "50000004", "19000003", "test"]]
    L.write_csv(split, ["dicom_id", "study_id", "subject_id", "split"], rows, gz=True)
    views = ["PA", "AP"]
    official = MimicCxr(root=tmp_path, views=views)
    assert [official.split_ids(s) for s in official.splits] == [["d4"], ["d3"], ["d1", "d5"]]
    code = MimicCxr(root=tmp_path, views=views, split_rule="code")  # p19 is test; p10's official test row is dropped
    assert [code.split_ids(s) for s in code.splits] == [[], ["d3"], ["d4", "d5"]]
    with pytest.raises(DataError, match="split_rule"):
        MimicCxr(root=tmp_path, split_rule="thesis").split_ids("train")


def test_iu_reports_from_the_torchxrayvision_wheel():
    reports = read_iu_reports(iu_reports_archive())
    assert len(reports) == 3955
    assert sum(bool(r["sections"].get("FINDINGS")) for r in reports) == 3425
    assert sum(bool(r["sections"].get("IMPRESSION")) for r in reports) == 3921
    mesh = Counter(term for r in reports for term in r["mesh_major"])
    assert mesh["normal"] == 1391
    data = IuXray()
    sizes = {s: len(data.split_ids(s)) for s in data.splits}
    assert sizes == {"train": 2749, "val": 393, "test": 785}
    first = data.records["CXR1"]
    assert first.meta["mesh_major"] == ["normal"] and first.meta["image_ids"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    assert first.report.startswith("The cardiac silhouette and mediastinum size are within normal limits.")
    assert first.report.endswith("Normal chest x-XXXX.")
    assert data.load("train")[0].image is None


def test_iu_images_from_an_open_i_folder(tmp_path):
    folder = tmp_path / "iu_xray" / "images"
    L.image(folder / "CXR1_1_IM-0001-3001.png", mode="L")  # PA per torchxrayvision's DICOM metadata
    L.image(folder / "CXR1_1_IM-0001-4001.png", mode="L")
    data = IuXray(root=tmp_path, image_size=8)
    assert data.records.keys() == {"CXR1"}
    split = next(s for s in data.splits if data.split_ids(s))
    sample = data.load(split)[0]
    assert sample.image.shape == (1, 8, 8) and sample.meta["image_id"] in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")
    assert sample.meta["views"][sample.meta["image_ids"].index(sample.meta["image_id"])] in ("PA", "AP")
    with pytest.raises(DataError, match="missing folder iu_xray/images/"):
        IuXray(root=tmp_path / "nothing").split_ids("train")


def _covid(root):
    folder = root / "covid-chestxray-dataset"
    header = ["patientid", "offset", "sex", "age", "finding", "survival", "view", "modality", "folder", "filename",
              "license", "clinical_notes"]
    rows = [[1, 0, "M", 60, "Pneumonia/Viral/COVID-19", "", "PA", "X-ray", "images", "a.jpeg", "CC BY", "fever"],
            [1, 3, "M", 60, "Pneumonia/Viral/COVID-19", "", "AP Supine", "X-ray", "images", "b.png", "CC BY", ""],
            [2, 0, "F", 50, "Streptococcus", "", "PA", "X-ray", "images", "c.jpg", "CC BY", "cough"],
            [3, 0, "F", 40, "COVID-19", "", "L", "X-ray", "images", "d.jpg", "CC BY", ""],
            [4, 0, "F", 40, "COVID-19", "", "Axial", "CT", "volumes", "e.nii.gz", "", ""]]
    L.write_csv(folder / "metadata.csv", header, rows)
    L.image(folder / "images" / "a.jpeg")
    L.image(folder / "images" / "b.png", mode="L")
    L.image(folder / "images" / "c.jpg")
    return folder


def test_covid_fixture_filters_views_and_labels(tmp_path):
    folder = _covid(tmp_path)
    data = CovidCxr(root=tmp_path, image_size=8)
    everything = data.load("all")
    assert everything.ids == ["a", "b", "c"]
    assert [s.label for s in everything] == [1, 1, 0] and everything[0].report == "fever" and everything[1].report is None
    assert everything[0].image.shape == (1, 8, 8)
    split_of = {sid: s for s in ("train", "val", "test") for sid in data.split_ids(s)}
    assert split_of["a"] == split_of["b"]  # one patient, one split
    (folder / "images" / "c.jpg").unlink()
    assert [str(p) for p in CovidCxr(root=tmp_path).check()] == [
        f"{folder / 'images' / 'c.jpg'}: missing image of metadata.csv line 4"]


def test_covid_real_copy(shared_data):
    root = shared_data / "cxr"
    data = CovidCxr(root=root, image_size=64)
    assert len(data.split_ids("all")) == 114
    assert sum(len(data.split_ids(s)) for s in ("train", "val", "test")) == 114
    labels = Counter(data.records[i].label for i in data.split_ids("all"))
    assert labels == {1: 80, 0: 34}  # 71 COVID-19 + 9 "COVID-19, ARDS" per the MANIFEST
    patients = {s: {data.records[i].group for i in data.split_ids(s)} for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["test"]) and not (patients["train"] & patients["val"])
    sample = data.load("test")[0]
    assert sample.image.shape == (1, 64, 64) and isinstance(sample.report, str) and sample.report
    assert torch.isfinite(sample.image).all()
    result = CliRunner().invoke(app, ["check", "covid-cxr", "--root", str(root)])
    assert result.exit_code == 0, result.output

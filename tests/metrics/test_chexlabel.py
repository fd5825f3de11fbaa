import numpy as np
import pytest
from sklearn.metrics import f1_score

from bench.metrics.chexlabel import CATEGORIES, binarize, chexpert_f1, label_report, label_reports, report_f1

NAN = np.nan


def labels_of(text):
    out = label_report(text)
    return {c: v for c, v in zip(CATEGORIES, out) if not np.isnan(v)}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("No pneumothorax or pleural effusion.", {"Pneumothorax": 0, "Pleural Effusion": 0, "No Finding": 1}),
        ("Mild cardiomegaly. Small left pleural effusion.", {"Cardiomegaly": 1, "Pleural Effusion": 1}),
        ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
        ("Left basilar opacity, possibly atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
        ("The heart is enlarged. No focal consolidation, but there is a right effusion.",
         {"Cardiomegaly": 1, "Consolidation": 0, "Pleural Effusion": 1}),
        ("Right IJ central venous catheter tip in the SVC. Lungs are clear.", {"Support Devices": 1, "No Finding": 1}),
        ("Pneumothorax has resolved.", {"Pneumothorax": 0, "No Finding": 1}),
        ("Findings suggest CHF.", {"Edema": -1, "Cardiomegaly": -1}),
        ("Calcified granuloma in the right upper lobe. Healed left rib fracture.", {"Fracture": 1}),
        ("Heart size is normal.", {"Cardiomegaly": 0, "No Finding": 1}),
    ],
)
def test_hand_labelled_sentences(text, expected):
    assert labels_of(text) == expected


def test_mention_conflicts_aggregate_like_chexpert():
    # negative + positive -> positive; negative + uncertain -> uncertain
    assert labels_of("No effusion on the left. Small right effusion.")["Pleural Effusion"] == 1
    assert labels_of("No effusion on the right. Possible small left effusion.")["Pleural Effusion"] == -1


def test_empty_report_and_matrix_shape():
    empty = label_report("")
    assert empty[0] == 1 and np.isnan(empty[1:]).all()
    assert label_reports(["", "Cardiomegaly."]).shape == (2, 14)
    assert label_reports([]).shape == (0, 14)


def test_ce_f1_against_sklearn_and_conventions():
    rng = np.random.default_rng(0)
    ref = rng.choice([1.0, 0.0, -1.0, NAN], size=(30, 14))
    gen = rng.choice([1.0, 0.0, -1.0, NAN], size=(30, 14))
    out = chexpert_f1(ref, gen)
    yr, yg = (ref == 1).astype(int), (gen == 1).astype(int)
    assert out["chexpert_f1_macro"] == pytest.approx(f1_score(yr, yg, average="macro", zero_division=0), abs=1e-12)
    assert out["chexpert_f1_micro"] == pytest.approx(f1_score(yr, yg, average="micro", zero_division=0), abs=1e-12)
    five = [CATEGORIES.index(c) for c in ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")]
    assert out["chexpert_f1_micro5"] == pytest.approx(f1_score(yr[:, five], yg[:, five], average="micro"), abs=1e-12)
    assert binarize([[1, -1, NAN, 0]]).tolist() == [[1, 0, 0, 0]]
    assert binarize([[1, -1, NAN, 0]], uncertain_as=1).tolist() == [[1, 1, 0, 0]]
    # uncertain -> positive changes the score
    assert chexpert_f1(ref, gen, uncertain_as=1)["chexpert_f1_micro"] != out["chexpert_f1_micro"]


def test_ce_f1_hand_case_and_identity():
    ref = np.full((2, 14), NAN)
    gen = np.full((2, 14), NAN)
    ref[0, 2] = 1  # cardiomegaly in report 0
    gen[0, 2] = 1
    gen[1, 10] = 1  # a false positive effusion
    out = chexpert_f1(ref, gen)
    assert out["chexpert_f1_micro"] == pytest.approx(2 * 1 / (2 * 1 + 1))  # TP 1, FP 1, FN 0
    assert out["chexpert_f1_macro"] == pytest.approx(1 / 14)  # only Cardiomegaly scores 1; the others 0 (zero_division=0)
    reports = ["Cardiomegaly with small bilateral effusions.", "No acute disease."]
    assert report_f1(reports, reports)["chexpert_f1_micro"] == 1.0
    with pytest.raises(ValueError):
        chexpert_f1(ref[:, :5], gen[:, :5])


def test_iu_xray_reports_and_mesh_mapping():
    from bench.metrics.chexlabel_iu import load_iu_reports, mesh_to_labels

    reports = load_iu_reports()
    assert len(reports) == 3955
    assert mesh_to_labels(["Cardiomegaly/mild", "Opacity/lung/base/left", "Thickening/pleura/apex"]).nonzero()[0].tolist() == [
        CATEGORIES.index("Cardiomegaly"), CATEGORIES.index("Lung Opacity"), CATEGORIES.index("Pleural Other")]
    assert mesh_to_labels(["Thickening/bronchi"]).sum() == 0
    # agreement floor on the cardiomegaly-tagged reports (measured recall 0.93, benchmarks/chexlabel_agreement.py)
    sub = [r for r in reports if mesh_to_labels(r.major_mesh)[2] == 1][:100]
    recall = np.mean([label_report(r.text)[2] == 1 for r in sub])
    assert recall > 0.85

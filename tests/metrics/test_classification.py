import numpy as np
import pytest
from sklearn import metrics

from bench.metrics.classification import ClassificationMetrics, auroc, classification_scores, support_weighted_mean

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ISIC2018_TASK3_TEST_SUPPORT = {"MEL": 171, "NV": 909, "BCC": 93, "AKIEC": 43, "BKL": 217, "DF": 44, "VASC": 35}


def test_against_sklearn_on_random_labels():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    out = classification_scores(t, p, labels=range(7), class_names=CLASSES)
    for avg in ("weighted", "macro"):
        assert out[f"f1_{avg}"] == pytest.approx(metrics.f1_score(t, p, average=avg), abs=1e-12)
        assert out[f"precision_{avg}"] == pytest.approx(metrics.precision_score(t, p, average=avg), abs=1e-12)
        assert out[f"recall_{avg}"] == pytest.approx(metrics.recall_score(t, p, average=avg), abs=1e-12)
    assert out["accuracy"] == pytest.approx(metrics.accuracy_score(t, p))
    assert out["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(t, p), abs=1e-12)
    assert out["recall_weighted"] == pytest.approx(out["accuracy"])  # weighted recall = accuracy
    assert out["f1[MEL]"] == pytest.approx(metrics.f1_score(t == 0, p == 0), abs=1e-12)


def test_single_class_and_accumulation():
    out = classification_scores([2, 2, 2], [2, 2, 2])
    assert out["accuracy"] == 1.0 and out["f1_macro"] == 1.0 and out["balanced_accuracy"] == 1.0
    # a class never predicted counts as zero, without a warning-crash
    out = classification_scores([0, 1], [0, 0], labels=[0, 1])
    assert out["f1[1]"] == 0.0
    m = ClassificationMetrics(labels=[0, 1, 2])
    m.update([0, 1], [0, 2])
    m.update([2], [2])
    assert m.compute() == classification_scores([0, 1, 2], [0, 2, 2], labels=[0, 1, 2])


def test_auroc_binary_and_ovr():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, 100)
    s = rng.random(100)
    assert auroc(t, s) == pytest.approx(metrics.roc_auc_score(t, s))
    t3 = rng.integers(0, 3, 90)
    prob = rng.dirichlet(np.ones(3), 90)
    assert auroc(t3, prob) == pytest.approx(metrics.roc_auc_score(t3, prob, multi_class="ovr"))
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    with pytest.raises(ValueError, match="single class"):
        auroc([1, 1, 1], [0.2, 0.3, 0.4])


# Table 4.3 class-wise F1 (MEL NV BCC AKIEC BKL DF VASC) -> Table 4.2 F1
TABLE_4_3 = {
    ("VGG16", "orig"): ([0.534, 0.878, 0.689, 0.564, 0.686, 0.583, 0.592], 0.775),
    ("VGG16", "aug"): ([0.603, 0.901, 0.701, 0.558, 0.707, 0.610, 0.582], 0.801),
    ("ResNet18", "orig"): ([0.609, 0.886, 0.705, 0.588, 0.674, 0.641, 0.644], 0.792),
    ("ResNet18", "aug"): ([0.622, 0.902, 0.718, 0.561, 0.720, 0.674, 0.667], 0.811),
    ("DenseNet121", "orig"): ([0.608, 0.898, 0.725, 0.552, 0.720, 0.717, 0.754], 0.811),
    ("DenseNet121", "aug"): ([0.657, 0.910, 0.749, 0.585, 0.723, 0.720, 0.712], 0.825),
    ("ViT", "orig"): ([0.647, 0.910, 0.721, 0.567, 0.767, 0.783, 0.733], 0.830),
    ("ViT", "aug"): ([0.671, 0.919, 0.746, 0.576, 0.781, 0.868, 0.733], 0.845),
}


@pytest.mark.parametrize("key", list(TABLE_4_3))
def test_table_4_2_weighted_f1_recomputes_from_table_4_3(key):
    classwise, reported = TABLE_4_3[key]
    weighted = support_weighted_mean(dict(zip(CLASSES, classwise)), ISIC2018_TASK3_TEST_SUPPORT)
    assert abs(weighted - reported) <= 0.001 + 1e-9
    # and the macro mean is far off, which rules out 'macro'
    assert abs(np.mean(classwise) - reported) > 0.05


def test_auroc_positive_vs_negative_protocol():
    from bench.metrics.classification import auroc_positive_vs_negative

    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1.0, 1.0, 50), rng.normal(0.0, 1.0, 40)
    y = np.r_[np.ones(50), np.zeros(40)]
    assert auroc_positive_vs_negative(pos, neg) == pytest.approx(metrics.roc_auc_score(y, np.r_[pos, neg]))
    # hand case: 2 positives, 2 negatives, one inverted pair of four -> 3/4
    assert auroc_positive_vs_negative([0.9, 0.4], [0.5, 0.1]) == pytest.approx(0.75)

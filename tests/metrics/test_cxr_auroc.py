"""The mini AUROC classifier of task cxr (bench.metrics.cxr_auroc): trained on cxr-mini's real images, it reads the
labels of held-out real images well above chance (the yardstick the generated images are measured with)."""
import numpy as np
import pytest
import torch

from bench.data.cxr_mini import CxrMini
from bench.metrics.cxr_auroc import classifier_auroc_on, load_scorer


def test_label_cnn_reads_held_out_real_images(tmp_path, capsys):
    ds = CxrMini(sizes={"train": 400, "test": 150})
    train, test = ds.load("train"), ds.load("test")
    images = torch.stack([train[i].image for i in range(len(train))])
    labels = torch.stack([train[i].labels for i in range(len(train))])
    cache = tmp_path / "cnn.safetensors"
    scorer = load_scorer("cxr-mini-cnn", images, labels, cache=cache, epochs=4, seed=0)
    test_images = torch.stack([test[i].image for i in range(len(test))])
    test_labels = np.stack([test[i].labels.numpy() for i in range(len(test))])
    aucs = classifier_auroc_on(scorer, test_images, test_labels)
    with capsys.disabled():
        print(f"\ncxr-mini-cnn AUROC on 150 held-out real images: { {k: round(v, 3) for k, v in aucs.items()} }")
    assert aucs["Cardiomegaly"] > 0.75 and aucs["Effusion"] > 0.65
    assert np.mean(list(aucs.values())) > 0.65
    reloaded = load_scorer("cxr-mini-cnn", cache=cache)  # the cached file gives the same scores
    a, b = scorer.score(test_images[:8]), reloaded.score(test_images[:8])
    assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_auroc_chance_test_agrees_with_sklearn_and_scipy_and_holds_its_level():
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    from bench.metrics.cxr_auroc import NEGATIVE, PATHOLOGIES, auroc_chance_test, auroc_scores

    rng = np.random.default_rng(1)
    names = np.array([p for p in PATHOLOGIES for _ in range(30)] + [NEGATIVE] * 30)
    signal = np.stack([(names == p) * 0.8 for p in PATHOLOGIES], axis=1)
    scores = rng.normal(size=(len(names), len(PATHOLOGIES))).round(1) + signal  # rounded: ties, counted as sklearn does
    got = auroc_chance_test(scores, names, n_permutations=500)
    want = auroc_scores({p: (scores[names == p, k], scores[names == NEGATIVE, k]) for k, p in enumerate(PATHOLOGIES)})
    assert got["auroc"] == pytest.approx(want["auroc"], abs=1e-12)
    for k, p in enumerate(PATHOLOGIES):
        y = np.r_[np.ones(30), np.zeros(30)]
        assert roc_auc_score(y, np.r_[scores[names == p, k], scores[names == NEGATIVE, k]]) > 0.6
        assert got[f"p[{p}]"] == mannwhitneyu(scores[names == p, k], scores[names == NEGATIVE, k],
                                              alternative="greater").pvalue
    assert got["p"] == pytest.approx(1 / 501) and abs(got["null_mean"] - 0.5) < 0.01

    # no signal: over 40 null data sets the permutation p-value is below 0.05 about 5 % of the time, never always
    ps = [auroc_chance_test(np.random.default_rng(s).normal(size=scores.shape), names, n_permutations=200)["p"]
          for s in range(40)]
    assert 0 <= sum(p < 0.05 for p in ps) <= 6 and 0.3 < float(np.median(ps)) < 0.7
    with pytest.raises(ValueError, match="scores"):
        auroc_chance_test(scores[:, :2], names)

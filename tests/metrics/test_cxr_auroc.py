"""The mini AUROC classifier of task cxr (bench.metrics.cxr_auroc): trained on cxr-mini's real images, it reads the
labels of held-out real images well above chance (the yardstick the generated images are measured with)."""
import numpy as np
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

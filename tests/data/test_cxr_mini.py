"""cxr-mini: label-driven images, real IU X-ray reports whose labels match, disjoint report splits."""
import numpy as np

from bench.registry import DATASETS


def test_samples_agree_with_their_reports():
    from bench.metrics.chexlabel import CATEGORIES, label_report

    ds = DATASETS.get("cxr-mini")(sizes={"train": 20})
    samples = ds.load("train")
    for s in samples[:20]:
        assert s.image.shape == (1, 64, 64) and 0 <= float(s.image.min()) and float(s.image.max()) <= 1
        expected = (np.nan_to_num(label_report(s.report), nan=0) == 1).astype(np.float32)
        np.testing.assert_array_equal(s.labels.numpy(), expected)
        assert s.meta["positive"] == [c for c, v in zip(CATEGORIES, expected) if v]
    again = ds.load("train")[3]
    assert again.image.equal(samples[3].image) and again.report == samples[3].report


def test_cardiomegaly_widens_the_heart_and_splits_are_disjoint():
    from bench.data.cxr_mini import render_chest, report_pool

    widths = {}
    for flag in (False, True):
        rows = []
        for seed in range(6):
            img = render_chest({"Cardiomegaly"} if flag else set(), np.random.default_rng(seed))
            rows.append((img[44:50] > 0.64).sum(1).max())  # bright heart pixels across the lower chest
        widths[flag] = np.mean(rows)
    assert widths[True] > widths[False] + 3
    train_ids = {r["id"] for r in report_pool("train")}
    assert not train_ids & {r["id"] for r in report_pool("test")}

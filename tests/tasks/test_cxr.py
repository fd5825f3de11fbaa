"""Task cxr (issue 20): conditions, report metrics against nltk / rouge-score / sklearn, the AUROC protocol."""
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import pytest
import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample
from bench.runner import RunConfig, run_one
from bench.tasks.cxr import CxrConfig, CxrTask, report_sections

SMOKE = {"sizes": {"train": 240, "val": 8, "test": 24}}


class EchoLabels(GeneratorBase):
    """Reports naming the positives of the condition, and noisy grey images: a deterministic stand-in."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"labels", "reference"}, returns={"image", "report"})

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from baselines.label_template.method import template_report
        from bench.metrics.chexlabel import CATEGORIES

        for k, cond in enumerate(conditions):
            positive = [c for c, v in zip(CATEGORIES, cond.labels.tolist()) if v >= 0.5]
            g = torch.Generator().manual_seed(k)
            yield Sample(image=torch.rand(1, 64, 64, generator=g) * 0.2 + 0.4, report=template_report(positive))


def _task(**kw):
    return CxrTask(CxrConfig(**{"dataset": "cxr-mini", "dataset_options": SMOKE, "image_size": 64, "n_generate": 8,
                                "n_auroc": 3, "auroc_classifier": "cxr-mini-cnn", "classifier_epochs": 1,
                                "extractor": "mini-clip", "n_reports": 10, **kw}))


def test_report_metrics_equal_the_libraries(tmp_path):
    from nltk.translate.bleu_score import corpus_bleu
    from rouge_score import rouge_scorer
    from sklearn.metrics import f1_score

    from bench.metrics.chexlabel import CATEGORIES, FIVE_LABELS, label_reports
    from bench.metrics.text import tokenize

    task = _task(output="report", input="real")
    ctx = RunContext(work_dir=tmp_path)
    data = task.load(ctx)
    conds = task.conditions(data, ctx)
    assert len(conds) == 10 and all(c.reference is not None and c.labels is not None for c in conds)
    synthetic = list(EchoLabels().generate(conds, ctx))
    ev = task.evaluate(data, synthetic, ctx, "echo")
    test = data.splits["test"]
    refs = [report_sections(test[i])[0] for i in task._report_indices(data)[0]]
    hyps = [s.report for s in synthetic]
    assert all(refs) and [r["reference"] for r in ev.per_sample] == refs
    for n in range(1, 5):
        want = corpus_bleu([[tokenize(r)] for r in refs], [tokenize(h) for h in hyps], weights=(1 / n,) * n)
        assert ev.metrics[f"bleu{n}"] == pytest.approx(want, abs=1e-12)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert ev.metrics["rouge_l"] == pytest.approx(np.mean([scorer.score(r, h)["rougeL"].fmeasure
                                                           for r, h in zip(refs, hyps)]), abs=1e-12)
    yr, yg = (label_reports(refs) == 1).astype(int), (label_reports(hyps) == 1).astype(int)
    five = [CATEGORIES.index(c) for c in FIVE_LABELS]
    assert ev.metrics["chexpert_f1_macro"] == pytest.approx(f1_score(yr, yg, average="macro", zero_division=0))
    assert ev.metrics["chexpert_f1_micro"] == pytest.approx(f1_score(yr, yg, average="micro", zero_division=0))
    assert ev.metrics["chexpert_f1_micro5"] == pytest.approx(
        f1_score(yr[:, five], yg[:, five], average="micro", zero_division=0))


def test_image_protocol_pairs_fd_set_and_auroc_sets(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio

    from bench.metrics.chexlabel import CATEGORIES
    from bench.metrics.cxr_auroc import PATHOLOGIES
    from bench.tasks.common import resize_image

    task = _task(output="both", input="generated")
    ctx = RunContext(work_dir=tmp_path, cache_dir=tmp_path / "cache")
    data = task.load(ctx)
    conds = task.conditions(data, ctx)
    assert len(conds) == 8 + 6 * 3
    test = data.splits["test"]
    pairs = task._fid_indices(data)
    assert len(set(pairs)) == 8 and pairs != list(range(8))  # a seeded random draw of test samples (thesis)
    assert all(torch.equal(conds[k].labels, test[i].labels) for k, i in enumerate(pairs))
    auroc = conds[8:]
    assert [c.meta["pathology"] for c in auroc[::3]] == [*PATHOLOGIES, "No Finding"]
    for c in auroc:  # single-positive vectors (task.auroc_labels=single)
        name = c.meta["pathology"]
        assert c.labels.sum() == 1 and c.labels[CATEGORIES.index(PATHOLOGIES.get(name, name))] == 1
    synthetic = list(EchoLabels().generate(conds, ctx))
    ev = task.evaluate(data, synthetic, ctx, "echo")
    fake = torch.stack([resize_image(s.image.expand(3, -1, -1), 64) for s in synthetic[:8]])
    real = torch.stack([resize_image(test[i].image.expand(3, -1, -1), 64) for i in pairs])
    want = np.mean([peak_signal_noise_ratio(r.numpy(), f.numpy(), data_range=1.0) for r, f in zip(real, fake)])
    assert ev.metrics["psnr"] == pytest.approx(want, rel=1e-6)
    assert ev.metrics["ssim[range=255]"] > ev.metrics["ssim[range=1]"]
    assert set(ev.metrics) >= {f"auroc[{p}]" for p in PATHOLOGIES} | {"auroc", "fd[mini-clip]"}
    # the template reports name exactly the conditioning positives: CE F1 against the condition is perfect
    assert ev.metrics["chexpert_f1_micro"] == pytest.approx(1.0)
    assert (tmp_path / "cache" / "cxr").is_dir()  # the classifier is cached for the next run


def test_auroc_protocol_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from bench.metrics.cxr_auroc import auroc_scores

    rng = np.random.default_rng(0)
    scores = {p: (rng.normal(1, 1, 20), rng.normal(0, 1, 30)) for p in ("Atelectasis", "Effusion")}
    out = auroc_scores(scores)
    for p, (pos, neg) in scores.items():
        assert out[f"auroc[{p}]"] == pytest.approx(roc_auc_score(np.r_[np.ones(20), np.zeros(30)], np.r_[pos, neg]))
    assert out["auroc"] == pytest.approx((out["auroc[Atelectasis]"] + out["auroc[Effusion]"]) / 2)
    assert auroc_scores({"x": (np.ones(3), np.zeros(3))})["auroc"] == 1.0


def test_outputs_select_what_a_method_must_return():
    from bench.config import ConfigError

    assert _task(output="image").needs == {"image"}
    assert _task(output="report", input="real").needs == {"report"}
    assert "reference" in _task(output="report", input="real").given()
    assert "reference" not in _task(output="both").given()
    why = _task(output="image").incompatibility(Capabilities(accepts={"labels"}, returns={"report"}))
    assert why and "image" in why and "task.output=report task.input=real" in why
    with pytest.raises(ConfigError, match="task.input=real"):
        CxrConfig(output="report", input="generated").validate()


def test_label_template_run_end_to_end(tmp_path):
    rec = run_one(RunConfig(task="cxr", method="label-template", profile="smoke", work_dir=tmp_path, progress=False,
                            sets=["task.output=report", "task.input=real"]))[0]
    assert rec["n"]["generated"] == 8
    assert 0 < rec["metrics"]["bleu1"] <= 1 and 0 < rec["metrics"]["chexpert_f1_micro"] <= 1


def test_auroc_conditions_from_real_label_vectors(tmp_path):
    from bench.metrics.chexlabel import CATEGORIES
    from bench.metrics.cxr_auroc import PATHOLOGIES

    task = _task(output="image", auroc_labels="real")
    data = task.load(RunContext(work_dir=tmp_path))
    plan = task._auroc_plan(data)
    train_vectors = {tuple(data.splits["train"][i].labels.tolist()) for i in range(len(data.splits["train"]))}
    for name, labels in plan:
        category = PATHOLOGIES.get(name, name)
        assert labels[CATEGORIES.index(category)] == 1
        if name != "No Finding":
            assert tuple(labels.tolist()) in train_vectors  # a real training label vector positive for it
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(plan, task._auroc_plan(data)))  # seeded

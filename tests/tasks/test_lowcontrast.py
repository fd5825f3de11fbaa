"""bench/tasks/lowcontrast.py: ITA selection vs derm-mini ground truth, conditions, metrics, end to end (smoke)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.derm_mini import DermMini
from bench.interface import RunContext, Sample
from bench.runner import RunConfig, resolve, run_one
from bench.store import new_file_mode
from bench.tasks.lowcontrast import _subset_scores, select_low_contrast


def test_ita_selection_agrees_with_derm_mini_ground_truth() -> None:
    samples = DermMini(image_size=64, sizes={"train": 200}).load("train")
    chosen, diffs = select_low_contrast(samples, 30.0)
    truth = np.array([s.meta["low_contrast"] for s in samples])
    pred = np.zeros(len(samples), bool)
    pred[chosen] = True
    agreement = (pred == truth).mean()
    assert 0.1 < truth.mean() < 0.35
    assert agreement >= 0.9, f"agreement {agreement:.3f}"
    meta_diff = np.array([s.meta["ita_diff"] for s in samples])
    assert np.corrcoef(diffs, meta_diff)[0, 1] > 0.9


def test_selection_skips_images_without_two_regions() -> None:
    img = torch.full((3, 8, 8), 0.5)
    chosen, diffs = select_low_contrast([Sample(image=img, mask=torch.zeros(8, 8, dtype=torch.bool))], 30.0)
    assert chosen == [] and np.isnan(diffs[0])


def test_subset_scores_use_the_pretrained_iou_to_define_s_x() -> None:
    pre = np.array([0.9, 0.7, 0.5, 0.3])
    dice, iou = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.05, 0.1, 0.2, 0.3])
    out = _subset_scores(dice, iou, pre, (0.8, 0.6))
    assert out["dice"] == pytest.approx(0.25) and out["iou[S_0.8]"] == pytest.approx(0.2)
    assert out["dice[S_0.6]"] == pytest.approx(0.35)
    ext = _subset_scores(dice, iou, pre, (0.2,), "ham10000,")
    assert ext["dice[ham10000]"] == pytest.approx(0.25) and np.isnan(ext["iou[ham10000,S_0.2]"])


def test_conditions_are_the_low_contrast_pairs_times_ratio() -> None:
    resolved = resolve(RunConfig(task="lowcontrast", method="real-lowcontrast", profile="smoke", sets=["task.ratio=2"]))
    task = resolved.task
    data = task.load(RunContext())
    chosen = data.extra["low_contrast"]
    conds = task.conditions(data, RunContext())
    assert len(conds) == 2 * len(chosen) and [c.meta["index"] for c in conds] == list(range(len(conds)))
    first = data.splits["train"][chosen[0]]
    assert torch.equal(conds[0].mask, first.mask) and torch.equal(conds[0].reference, first.image)
    assert conds[len(chosen)].meta["source_index"] == chosen[0] and conds[len(chosen)].meta["copy"] == 1


def test_smoke_runs_share_the_pretrained_models_and_report_subsets(tmp_path) -> None:
    ref, _ = run_one(RunConfig(task="lowcontrast", method="real-only", profile="smoke", work_dir=tmp_path, progress=False))
    cached = list((tmp_path / "cache" / "pretrained").iterdir())  # read by other users' runs: not 0600, no temporaries
    assert cached and all(p.stat().st_mode & 0o777 == new_file_mode() and ".tmp" not in p.name for p in cached)
    rec, path = run_one(RunConfig(task="lowcontrast", method="real-lowcontrast", profile="smoke", work_dir=tmp_path,
                                  progress=False))
    for key in ("dice", "iou", "dice[S_0.8]", "iou[S_0.6]"):
        assert key in rec["metrics"] and key in rec["per_model"]["unet"]
    comp = rec["comparisons"]
    assert comp["reference_per_model"] == ref["per_model"]  # the cached pretrained model is the real-only run
    sel = comp["low_contrast_selection"]
    assert rec["n"]["generated"] == sel["n_selected"] == rec["n"]["low_contrast_train"] > 0
    assert sel["ground_truth"]["agreement"] >= 0.85
    seg_keys = {k for k in rec["metrics"] if k.split("[")[0] in ("dice", "iou")}
    assert set(comp["relative_gain"]) == seg_keys and "iou" in comp["paired_ttest"]
    # Table 5.2 / 5.5 scores of the "generated" set: real-lowcontrast returns each style reference itself, so the
    # paired distances vanish and the Frechet distance to the low-contrast set is ~0 (checks the pairing).
    m = rec["metrics"]
    assert m["lpips[alex-random]"] == pytest.approx(0.0, abs=1e-4)  # uint8 storage of generated images
    assert m["clip_i[mini-clip,paired]"] == pytest.approx(1.0, abs=1e-4)
    assert abs(m["fd[mini-clip]"]) < 1e-2 and m["lpips_diversity[masks,alex-random]"] > 0
    info = rec["metric_info"]
    assert info["lpips[alex-random]"]["higher_is_better"] is False and info["fd[mini-clip]"]["higher_is_better"] is False
    import pandas as pd

    scores = pd.read_csv(path.parent / rec["per_sample_file"])
    assert set(scores["arm"]) == {"real-only", "finetuned"} and {"ita_difference", "pretrained_iou"} <= set(scores.columns)
    pre = scores[(scores["arm"] == "real-only") & (scores["split"] == "test")]  # smoke/mini also score the HAM10000 twin
    assert pre["iou"].mean() == pytest.approx(ref["metrics"]["iou"])
    n_s06 = comp["subset_sizes"]["unet"]["S_0.6"]
    assert n_s06 == int((pre["iou"] < 0.6).sum())

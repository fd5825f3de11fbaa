"""DiffBoost's downstream protocol in seg-aug (spec B.9, issue 21): case-level folds, fold aggregation, precision /
recall, HD95 / ASSD in mm, and a smoke run with folds=3 whose per-fold rows recompute (bench submit's checks)."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from bench.interface import Sample
from bench.tasks.derm_seg import (SegAugConfig, SegAugTask, aggregate, case_folds, case_keys, fold_std,
                                  hold_out_cases, pixel_spacings)


def _samples(cases):
    return [Sample(image=torch.zeros(1, 8, 8), mask=torch.zeros(8, 8, dtype=torch.bool),
                   meta={"id": f"s{i}", **({"case": c} if c is not None else {})}) for i, c in enumerate(cases)]


def test_case_folds_are_case_disjoint_cover_every_case_and_follow_kfold():
    from sklearn.model_selection import KFold

    # 7 cases with 1-4 slices each, listed out of order
    cases = case_keys(_samples(["p3", "p1", "p1", "p7", "p2", "p3", "p5", "p4", "p4", "p4", "p6", "p2", "p10"]))
    folds = case_folds(cases, 3)
    assert len(folds) == 3
    seen = []
    for train, test in folds:
        assert sorted(train + test) == list(range(len(cases)))
        assert not {cases[i] for i in train} & {cases[i] for i in test}  # case-disjoint
        seen += [cases[i] for i in test]
    assert sorted(seen) == sorted(cases)  # every sample tested exactly once
    unique = sorted(set(cases))  # KFold without shuffle over the sorted case ids: contiguous blocks
    expected = [{unique[j] for j in t} for _, t in KFold(n_splits=3, shuffle=False).split(unique)]
    assert [{cases[i] for i in test} for _, test in folds] == expected


def test_samples_without_case_are_their_own_case_and_validation_holds_out_whole_cases():
    cases = case_keys(_samples([None, None, "a", "a", None]))
    assert cases == ["id:s0", "id:s1", "case:a", "case:a", "id:s4"]
    cases = case_keys(_samples(["a", "a", "b", "b", "c", "d", "d", "e"]))
    fit, val = hold_out_cases(cases, list(range(8)), 0.2, seed=3)
    assert sorted(fit + val) == list(range(8)) and not {cases[i] for i in fit} & {cases[i] for i in val}
    assert len({cases[i] for i in val}) == 1  # round(0.2 * 5 cases)
    from bench.data.base import DataError
    with pytest.raises(DataError, match="at least 3 cases"):
        case_folds(["a", "b"], 3)


def test_fold_aggregation_matches_a_hand_computation():
    per_fold = [[1.0, 2.0, 3.0], [4.0, 5.0]]  # fold means 2 and 4.5
    assert aggregate(per_fold, "mean-of-folds") == pytest.approx(3.25)
    assert aggregate(per_fold, "pooled") == pytest.approx(3.0)
    assert fold_std(per_fold, "mean-of-folds") == pytest.approx(math.sqrt((2 / 3 + 0.25) / 2))
    assert fold_std(per_fold, "pooled") == pytest.approx(np.std([1, 2, 3, 4, 5]))
    # NaN (HD95 with both masks empty) is left out
    assert aggregate([[1.0, float("nan")], [3.0]], "mean-of-folds") == pytest.approx(2.0)


def test_precision_recall_equal_sklearn_and_follow_the_empty_convention():
    from sklearn.metrics import precision_score, recall_score

    from bench.metrics.segmentation import precision_recall

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 16, 16, generator=g) > 0.6
    target = torch.rand(6, 16, 16, generator=g) > 0.5
    p, r = precision_recall(pred, target)
    for i in range(6):
        y, yhat = target[i].flatten().numpy(), pred[i].flatten().numpy()
        assert p[i].item() == pytest.approx(precision_score(y, yhat))
        assert r[i].item() == pytest.approx(recall_score(y, yhat))
    empty, full = torch.zeros(1, 4, 4, dtype=torch.bool), torch.ones(1, 4, 4, dtype=torch.bool)
    assert precision_recall(empty, empty) == (torch.tensor([1.0], dtype=torch.float64),) * 2
    assert [t.item() for t in precision_recall(empty, full)] == [0.0, 0.0]  # nothing found
    assert [t.item() for t in precision_recall(full, empty)] == [0.0, 0.0]  # all false positives


def test_surface_scores_use_the_spacing_rescaled_to_the_segmenters_size():
    task = SegAugTask(SegAugConfig(surface_metrics=True))
    pred = torch.zeros(2, 32, 32, dtype=torch.bool)
    target = torch.zeros(2, 32, 32, dtype=torch.bool)
    pred[:, 8:20, 8:20], target[:, 10:24, 9:22] = True, True
    pred[1], target[1] = False, False  # both empty: NaN, left out of means
    one = task._score(pred, target, [(1.0, 1.0)] * 2)
    two = task._score(pred, target, [(2.0, 2.0)] * 2)
    assert one["hd95"][0] > 0 and two["hd95"][0] == pytest.approx(2 * one["hd95"][0])
    assert two["assd"][0] == pytest.approx(2 * one["assd"][0])
    assert math.isnan(one["hd95"][1]) and one["dice"][1] == 1.0
    assert task._score(pred, target, None)["hd95"][0] == pytest.approx(one["hd95"][0])  # pixels
    # meta["spacing"] is at the delivered size: 64 px delivered at 0.5 mm -> 1 mm at 32 px; no spacing -> None
    s = [Sample(image=torch.zeros(1, 64, 64), mask=torch.zeros(64, 64, dtype=torch.bool), meta={"spacing": (0.5, 0.25)})]
    assert pixel_spacings(s, 32) == [(1.0, 0.5)]
    assert pixel_spacings(_samples([None]), 32) is None


def test_new_keys_at_their_defaults_keep_the_protocol_hash_and_bad_values_are_refused():
    from bench.config import ConfigError, to_dict
    from bench.store import protocol_of

    old = protocol_of(SegAugConfig(), SegAugTask)
    assert not set(SegAugTask.protocol_left_out_at) & set(old)
    assert "folds" in protocol_of(SegAugConfig(folds=3, transfer_dataset=None), SegAugTask)
    assert set(to_dict(SegAugConfig())) - set(old) >= set(SegAugTask.protocol_left_out_at)
    for bad, match in (({"folds": 1}, "folds"), ({"folds": 3, "n_real": 10, "transfer_dataset": None}, "n_real"),
                       ({"folds": 3, "transfer_dataset": "ph2"}, "transfer_dataset"), ({"fold_val_fraction": 1.0}, "fold_val_fraction"),
                       ({"fold": 0}, "task.folds"), ({"folds": 3, "fold": 3, "transfer_dataset": None}, "task.fold")):
        with pytest.raises(ConfigError, match=match):
            SegAugConfig(**bad).validate()


@pytest.mark.parametrize("selection", ["val", "test-fold"])
def test_smoke_run_with_three_folds_writes_per_fold_rows_that_recompute(tmp_path, selection):
    """derm-mini has no cases: every image is its own case; the 88 smoke samples are split 30/29/29. The test-fold
    run also scores per case (eval_unit: case; here one image per case)."""
    from bench.leaderboard.checks import check_scores
    from bench.leaderboard.submit import SubmissionError
    from bench.runner import RunConfig, run_one

    sets = ["task.transfer_dataset=null", "task.folds=3", "task.surface_metrics=true", f"task.model_selection={selection}",
            "task.segmenters=[monai-attention-unet]", "task.loss=dice+ce", "task.optimizer=adamw", "task.max_epochs=2",
            "task.patience=2", "task.n_generate=48", "task.grid_size=0", "task.mask_lpips=false",
            "method.transform=RandomRotate", *(["task.eval_unit=case"] if selection == "test-fold" else [])]
    record = run_one(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", dataset="derm-mini", sets=sets,
                               work_dir=tmp_path, progress=False))[0]
    folds = record["comparisons"]["folds"]
    assert record["n"] == {"labelled": 88, "cases": 88, "folds": 3, "generated": 48, "test": 88}
    assert [f["test"] for f in folds["sizes"]] == [30, 29, 29]
    assert [f["val"] for f in folds["sizes"]] == ([12, 12, 12] if selection == "val" else [30, 29, 29])
    assert record["comparisons"]["units"] == {"hd95": "pixel", "assd": "pixel"}  # derm-mini has no spacing
    assert set(record["metrics"]) == {"dice", "iou", "precision", "recall", "hd95", "assd"}
    with open(tmp_path / "records" / record["per_sample_file"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["arm"], r["fold"]) for r in rows} == {(a, str(k)) for a in ("real-only", "augmented") for k in range(3)}
    assert len({r["id"] for r in rows if r["arm"] == "augmented"}) == 88  # every labelled image tested once
    mine = [r for r in rows if r["arm"] == "augmented"]
    by_fold = [np.mean([float(r["dice"]) for r in mine if r["fold"] == str(k)]) for k in range(3)]
    assert record["metrics"]["dice"] == pytest.approx(np.mean(by_fold))  # mean of the fold means (B.9)
    # ids = all labelled samples (per case: derm-mini's cases are its images), surface metrics recomputed
    assert check_scores(record, rows) == ""
    first = next(k for k, r in enumerate(rows) if r["arm"] == "augmented")
    moved = [dict(r, id="dm-0-test-99999") if k == first else r for k, r in enumerate(rows)]
    with pytest.raises(SubmissionError, match="per-sample ids of model monai-attention-unet are not"):
        check_scores(record, moved)
    edited = json.loads(json.dumps(record))
    edited["metrics"]["hd95"] += 0.5
    with pytest.raises(SubmissionError, match="hd95"):
        check_scores(edited, rows)


@pytest.mark.parametrize("unit", ["meta", "pixel"])
def test_fold_plan_carries_the_spacing_unless_pixels_are_asked_for(unit):
    from bench.tasks.base import TaskData

    def split(name, n):
        return [Sample(image=torch.rand(3, 32, 32), mask=torch.rand(32, 32) > 0.5,
                       meta={"id": f"{name}{i}", "case": f"{name}-c{i // 2}", "spacing": (0.5, 0.5)}) for i in range(n)]

    data = TaskData("toy", {"train": split("a", 8), "val": split("b", 4), "test": split("c", 6)}, {})
    task = SegAugTask(SegAugConfig(image_size=16, folds=3, surface_metrics=True, surface_spacing=unit))
    folds = task._plan(data, [])
    assert sum(len(f.test_ids) for f in folds) == 18 and folds[0].n_cases == 9
    spacing = folds[0].tests["test"][2]
    assert spacing == ([(1.0, 1.0)] * len(folds[0].test_ids) if unit == "meta" else None)  # 32 px -> 16 px


def test_a_fold_trains_only_on_renderings_of_its_own_training_images():
    from bench.tasks.base import TaskData

    real = [Sample(image=torch.rand(3, 16, 16), mask=torch.rand(16, 16) > 0.5, meta={"id": f"r{i}", "case": f"c{i}"})
            for i in range(6)]
    syn = [Sample(image=torch.rand(3, 16, 16), mask=torch.rand(16, 16) > 0.5, meta={"source_id": sid})
           for sid in ["r0", "r1", "r2", "r3", "r4", "r5", "generated-7", None]]
    data = TaskData("toy", {"train": real[:4], "val": real[4:5], "test": real[5:]}, {})
    for selection in ("val", "test-fold"):
        folds = SegAugTask(SegAugConfig(image_size=16, folds=3, model_selection=selection))._plan(data, syn)
        for f in folds:
            used = {syn[i].meta["source_id"] for i in f.synthetic}
            assert used - {"generated-7", None} == set(f.real_ids)  # never a test-fold or validation image
            assert {"generated-7", None} <= used  # samples naming no labelled image stay
            assert not set(f.real_ids) & set(f.test_ids)


def test_case_scores_are_over_the_stacked_volume_in_z_order_with_3d_spacing():
    from bench.metrics.surface import hd95_assd
    from bench.tasks.derm_seg import case_volumes

    g = torch.Generator().manual_seed(2)
    # case "a": slices at z 2, 0, 1 (listed out of order); case "b": one slice
    meta = [("a", 2), ("b", 0), ("a", 0), ("a", 1)]
    samples = [Sample(image=torch.zeros(1, 16, 16), mask=torch.zeros(16, 16, dtype=torch.bool),
                      meta={"id": f"s{i}", "case": c, "z": z, "slice_thickness": 3.0}) for i, (c, z) in enumerate(meta)]
    volumes = case_volumes(samples, [(0.5, 0.5)] * 4)
    assert volumes == [("a", [2, 3, 0], (3.0, 0.5, 0.5)), ("b", [1], (3.0, 0.5, 0.5))]
    pred = torch.zeros(4, 16, 16, dtype=torch.bool)
    target = torch.zeros(4, 16, 16, dtype=torch.bool)
    pred[:, 3:10, 4:12], target[:, 5:12, 4:13] = True, True
    pred[3] = torch.rand(16, 16, generator=g) > 0.7
    task = SegAugTask(SegAugConfig(surface_metrics=True, eval_unit="case"))
    scores = task._score(pred, target, None, volumes)
    idx = [2, 3, 0]
    inter, total = (pred[idx] & target[idx]).sum().item(), pred[idx].sum().item() + target[idx].sum().item()
    assert scores["dice"][0] == pytest.approx(2 * inter / total)  # voxels of the whole case, not a mean of slices
    assert scores["precision"][0] == pytest.approx(inter / pred[idx].sum().item())
    assert scores["hd95"][0] == pytest.approx(hd95_assd(pred[idx], target[idx], (3.0, 0.5, 0.5))[0])
    assert len(scores["dice"]) == 2
    from bench.data.base import DataError
    for s in samples:
        del s.meta["slice_thickness"]
    with pytest.raises(DataError, match="slice_thickness"):
        case_volumes(samples, [(0.5, 0.5)] * 4)
    assert case_volumes(samples, None)[0][2] is None  # pixels


def test_one_fold_per_run_fits_the_generator_on_that_folds_training_cases_and_all_folds_refuse_a_fit():
    """DiffBoost fits one generator per fold (B.6): fold=k gives the generator fold k's training cases and scores
    fold k only; a run of all folds hands a fit set that refuses to be read."""
    from bench.config import ConfigError
    from bench.tasks.base import TaskData

    real = [Sample(image=torch.rand(3, 16, 16), mask=torch.rand(16, 16) > 0.5, meta={"id": f"r{i}", "case": f"c{i // 2}"})
            for i in range(12)]
    data = TaskData("toy", {"train": real[:8], "val": real[8:10], "test": real[10:]}, {})
    config = dict(image_size=16, folds=3, transfer_dataset=None)
    whole = SegAugTask(SegAugConfig(**config))._plan(data, [])
    for k in range(3):
        task = SegAugTask(SegAugConfig(**config, fold=k))
        (planned,) = task._plan(data, [])
        assert planned.test_ids == whole[k].test_ids and planned.real_ids == whole[k].real_ids
        fit = [s.meta["id"] for s in task.fit_set(data)]
        assert fit == whole[k].real_ids  # the fold's training cases (validation cases held out), never a test id
        assert not set(fit) & set(planned.test_ids)
    # the fit (and generation) stage keys read fit_identity: a fold must never reuse another fold's generator
    identities = [SegAugTask(SegAugConfig(**config, fold=k)) for k in range(3)]
    assert len({json.dumps(t.fit_identity(), sort_keys=True) for t in identities}) == 3
    assert len({json.dumps(t.generation_identity(), sort_keys=True) for t in identities}) == 3
    no_folds = {k: v for k, v in config.items() if k != "folds"}
    for unchanged in (SegAugConfig(**no_folds), SegAugConfig(**config)):  # runs that fit no fold keep their keys
        assert "fold" not in SegAugTask(unchanged).fit_identity()
    refused = SegAugTask(SegAugConfig(**config)).fit_set(data)
    with pytest.raises(ConfigError, match="one run per fold"):
        len(refused)
    with pytest.raises(ConfigError, match="one run per fold"):
        list(refused)

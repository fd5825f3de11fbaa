"""The ids a fold or per-case record must score (`bench.leaderboard.checks.scored_ids`) are the ones the task scores:
its case-level KFold over the pooled labelled samples (DiffBoost B.8), computed from the dataset definition alone and
checked here against the task's own fold code on the loaded samples."""
import pytest

from bench.leaderboard.checks import scored_ids
from bench.registry import DATASETS
from bench.tasks.derm_seg import case_folds, case_keys

SPLITS = ("train", "val", "test")


def _record(dataset: str, options: dict, **task) -> dict:
    return {"dataset": {"id": dataset},
            "config": {"task": {"dataset": dataset, "image_size": 32, "dataset_options": options, **task}}}


def _scored_by_the_task(dataset: str, options: dict, fold: int, unit: str) -> list[str]:
    source = DATASETS.get(dataset)(root=None, image_size=32, **options)
    samples = [s for name in SPLITS for s in source.load(name)]
    keys = case_keys(samples)
    _, held = case_folds(keys, 3)[fold]
    if unit == "case":
        return sorted({keys[i].split(":", 1)[1] for i in held})
    return sorted(samples[i].meta["id"] for i in held)


@pytest.mark.parametrize("dataset, options, unit", [
    ("ct-spleen-mini", {"n_cases": 9}, "case"),
    ("busi-mini", {"sizes": {"train": 12, "val": 3, "test": 5}}, "image"),
])
@pytest.mark.parametrize("fold", [0, 2])
def test_a_fold_record_scores_the_ids_of_its_fold(dataset, options, unit, fold):
    expected = _scored_by_the_task(dataset, options, fold, unit)
    assert scored_ids(_record(dataset, options, folds=3, fold=fold, eval_unit=unit)) == expected
    whole = scored_ids(_record(dataset, options, folds=3, fold=None, eval_unit=unit))
    assert set(expected) < set(whole)  # a fold is a strict part of the pooled set


def test_cases_of_a_dataset_that_needs_its_files_are_not_guessed():
    record = _record("msd-spleen", {}, folds=3, fold=0, eval_unit="case")
    assert scored_ids(record) is None

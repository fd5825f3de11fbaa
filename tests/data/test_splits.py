"""Standard splits: seeded, stratified, grouped; k-fold as sklearn's KFold; CSV round trip."""
from __future__ import annotations

from collections import Counter

import pytest

from bench.data.base import DataError
from bench.data.splits import assign_splits, kfold_assign, read_split_csv, split_csv_text

FRACTIONS = {"train": 0.6, "val": 0.1, "test": 0.3}


def test_deterministic_order_free_and_seeded():
    ids = [f"id{i:03d}" for i in range(50)]
    first = assign_splits(ids, FRACTIONS, seed=7)
    assert assign_splits(ids[::-1], FRACTIONS, seed=7) == first
    assert assign_splits(ids, FRACTIONS, seed=8) != first
    assert Counter(first.values()) == {"train": 30, "val": 5, "test": 15}


def test_stratified_counts_per_stratum():
    ids = [f"a{i}" for i in range(80)] + [f"b{i}" for i in range(40)]
    strata = {i: i[0] for i in ids}
    result = assign_splits(ids, FRACTIONS, seed=1, strata=strata)
    by = Counter((strata[i], s) for i, s in result.items())
    assert by == {("a", "train"): 48, ("a", "val"): 8, ("a", "test"): 24,
                  ("b", "train"): 24, ("b", "val"): 4, ("b", "test"): 12}


def test_groups_never_straddle_splits():
    ids = [f"p{p}_img{k}" for p in range(30) for k in range(p % 4 + 1)]
    groups = {i: i.split("_")[0] for i in ids}
    result = assign_splits(ids, FRACTIONS, seed=3, groups=groups)
    for patient in set(groups.values()):
        assert len({result[i] for i in ids if groups[i] == patient}) == 1


def test_bad_fractions():
    with pytest.raises(DataError, match="sum to 1"):
        assign_splits(["a"], {"train": 0.5, "test": 0.2}, seed=0)


def test_kfold_matches_sklearn_unshuffled():
    cases = [f"case_{i}" for i in (3, 1, 7, 5, 2, 9, 4)]
    ordered = sorted(cases)  # case_1 case_2 case_3 case_4 case_5 case_7 case_9
    train, test = kfold_assign(cases, 3, 0)
    assert test == ordered[:3] and train == ordered[3:]
    assert kfold_assign(cases, 3, 2)[1] == ordered[5:]
    with pytest.raises(DataError, match="fold must be in 0..2"):
        kfold_assign(cases, 3, 3)


def test_csv_round_trip(tmp_path):
    assignment = {"b": "test", "a": "train", "c": "train"}
    path = tmp_path / "s.csv"
    path.write_text(split_csv_text(assignment, ["train", "val", "test"]))
    assert path.read_text().splitlines() == ["id,split", "a,train", "c,train", "b,test"]
    assert read_split_csv(path) == {"train": ["a", "c"], "test": ["b"]}

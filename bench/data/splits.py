"""Standard splits: committed split files and splits derived with a recorded seed.

Datasets without an official split get one made by `assign_splits`: items (or
groups of items: a patient, a lesion, a volume) are sorted, stratified, shuffled
by a seeded numpy generator and cut by fractions. The same inputs and seed give
the same split on every machine. Splits made once from a public file list are
committed as ``datasets/splits/<id>.csv`` (columns ``id,split``) with their
SHA-256 in the data card; the others are derived at load time from the sorted
file list, and the algorithm, fractions and seed are recorded in the card.
"""
from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.data.base import DataError

logger = logging.getLogger(__name__)

#: Name of the algorithm `assign_splits` implements (recorded in cards).
ALGORITHM = "stratified-group-shuffle/1"


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer counts per part for ``n`` items: round the later parts, the first part takes the rest."""
    counts = [int(round(n * f)) for f in fractions[1:]]
    while sum(counts) > n:  # tiny strata: never allocate more than there is
        counts[counts.index(max(counts))] -= 1
    return [n - sum(counts), *counts]


def assign_splits(ids: Sequence[str], fractions: Mapping[str, float], seed: int,
                  strata: Mapping[str, str] | None = None, groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """Assign every id to a split.

    Args:
        ids: item ids (any order; they are sorted first).
        fractions: split name -> fraction, in order; the first split takes the rounding remainder
            (``{"train": 0.6, "val": 0.1, "test": 0.3}``). Must sum to 1.
        seed: seed of the shuffle (recorded in the card).
        strata: id -> stratum (e.g. diagnosis); each stratum is split with the same fractions.
        groups: id -> group (patient, lesion, volume); a group never straddles two splits.
            A group's stratum is that of its first id (sorted).

    Returns:
        id -> split name.
    """
    names = list(fractions)
    values = [float(fractions[n]) for n in names]
    if abs(sum(values) - 1.0) > 1e-6 or any(v < 0 for v in values):
        raise DataError(f"split fractions must be non-negative and sum to 1, got {dict(fractions)}")
    group_of = {i: (groups[i] if groups else i) for i in ids}
    members: dict[str, list[str]] = defaultdict(list)
    for item in sorted(ids):
        members[group_of[item]].append(item)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group in sorted(members):
        by_stratum[strata[members[group][0]] if strata else ""].append(group)
    rng = np.random.default_rng(seed)
    result: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        stratum_groups = by_stratum[stratum]
        order = [stratum_groups[k] for k in rng.permutation(len(stratum_groups))]
        counts = _allocate(len(order), values)
        # Cut in reverse order of the names so the later (smaller) splits are filled first from the front.
        start = 0
        for name, count in zip(names[::-1], counts[::-1]):
            for group in order[start:start + count]:
                for item in members[group]:
                    result[item] = name
            start += count
    return result


def kfold_assign(cases: Sequence[str], n_folds: int, fold: int) -> tuple[list[str], list[str]]:
    """Unshuffled k-fold over sorted cases, as ``sklearn.model_selection.KFold(n_splits)`` (DiffBoost's code).

    Returns:
        (training cases, test cases) of fold ``fold``.
    """
    from sklearn.model_selection import KFold

    if not 0 <= fold < n_folds:
        raise DataError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    ordered = sorted(cases)
    if len(ordered) < n_folds:
        raise DataError(f"{len(ordered)} cases cannot make {n_folds} folds")
    train_idx, test_idx = list(KFold(n_splits=n_folds).split(ordered))[fold]
    return [ordered[i] for i in train_idx], [ordered[i] for i in test_idx]


def split_csv_text(assignment: Mapping[str, str], split_order: Sequence[str]) -> str:
    """The canonical CSV text of a split (``id,split``; rows by split order, then id)."""
    rank = {name: k for k, name in enumerate(split_order)}
    rows = sorted(assignment.items(), key=lambda kv: (rank.get(kv[1], len(rank)), kv[0]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "split"])
    writer.writerows(rows)
    return out.getvalue()


def read_split_csv(path: Path) -> dict[str, list[str]]:
    """Split name -> ids (in file order) from an ``id,split`` CSV."""
    if not path.is_file():
        raise DataError(f"{path}: split file missing")
    result: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "split"} <= set(reader.fieldnames):
            raise DataError(f"{path}: split file must have columns id,split (has {reader.fieldnames})")
        for row in reader:
            result[row["split"]].append(row["id"])
    return dict(result)

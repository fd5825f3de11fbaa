"""Data cards: one YAML per dataset in the top-level ``datasets/`` folder.

A card says what a dataset is (name, citation, licence, where to get it), how its
folder is laid out under ``--data-root``, its class order, its splits (official,
committed split file, or derived at load time with a recorded seed) and the
expected file count per split. ``datasets/`` is not a Python package (a package of
that name would shadow Hugging Face ``datasets``); in a wheel it is installed as
data under ``<prefix>/share/medsynth-bench/datasets`` (see pyproject's
``[tool.setuptools.data-files]``), in a source checkout it is read in place.
"""
from __future__ import annotations

import hashlib
import logging
import site
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.data.base import DataError

logger = logging.getLogger(__name__)

#: Keys every card must have.
REQUIRED_KEYS = ("id", "name", "citation", "licence", "obtain", "layout", "folder", "splits")
#: Where a wheel installs the cards, relative to an installation prefix.
INSTALLED_SUBDIR = Path("share") / "medsynth-bench" / "datasets"


def _candidate_dirs() -> list[Path]:
    checkout = Path(__file__).resolve().parents[2]
    dirs = []
    if (checkout / "pyproject.toml").is_file() and (checkout / "datasets").is_dir():
        dirs.append(checkout / "datasets")
    for prefix in (sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)):
        if prefix:
            dirs.append(Path(prefix) / INSTALLED_SUBDIR)
    return dirs


@lru_cache(maxsize=1)
def cards_dir() -> Path:
    """The folder holding the data cards (``<id>.yaml``) and ``splits/``.

    Raises:
        DataError: when neither a source checkout nor an installed copy is found.
    """
    for folder in _candidate_dirs():
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    tried = ", ".join(str(d) for d in _candidate_dirs())
    raise DataError(f"data cards not found (looked in {tried}); reinstall medsynth-bench")


def card_ids() -> list[str]:
    """Ids of all data cards, sorted."""
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


@lru_cache(maxsize=64)
def load_card(dataset_id: str) -> dict[str, Any]:
    """The parsed card of ``dataset_id``.

    Raises:
        DataError: when the card is missing or lacks a required key.
    """
    import yaml

    path = cards_dir() / f"{dataset_id}.yaml"
    if not path.is_file():
        raise DataError(f"{path}: no data card for dataset '{dataset_id}'")
    with path.open(encoding="utf-8") as handle:
        card = yaml.safe_load(handle)
    if not isinstance(card, dict):
        raise DataError(f"{path}: not a YAML mapping")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise DataError(f"{path}: card lacks {', '.join(missing)}")
    if card["id"] != dataset_id:
        raise DataError(f"{path}: card id '{card['id']}' does not match the file name")
    return card


def card_path(dataset_id: str) -> Path:
    """Path of the card file (for messages)."""
    return cards_dir() / f"{dataset_id}.yaml"


def split_file(dataset_id: str) -> Path:
    """Path of the committed split CSV of ``dataset_id`` (``splits/<id>.csv``)."""
    return cards_dir() / "splits" / f"{dataset_id}.csv"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_count(card: dict[str, Any], split: str) -> int | None:
    """The card's expected number of samples in ``split`` (None when the card gives none)."""
    entry = card["splits"].get(split) or {}
    count = entry.get("count") if isinstance(entry, dict) else None
    return int(count) if count is not None else None

"""Data cards: every real dataset has one, class orders agree, committed split files match their checksums."""
from __future__ import annotations

import pytest

from bench.data.base import DataError, checksum_ids
from bench.data.cards import REQUIRED_KEYS, card_ids, cards_dir, file_sha256, load_card, split_file
from bench.data.real import RealDataset
from bench.data.splits import read_split_csv
from bench.registry import DATASETS

REAL = [name for name in DATASETS.names() if issubclass(DATASETS.get(name), RealDataset)]


def test_cards_dir_is_the_top_level_datasets_folder():
    assert cards_dir().name == "datasets" and (cards_dir() / "splits").is_dir()
    assert not (cards_dir() / "__init__.py").exists()  # not a Python package (would shadow HF datasets)


@pytest.mark.parametrize("name", REAL)
def test_card_complete_and_consistent(name):
    card = load_card(name)
    assert all(card[k] for k in REQUIRED_KEYS if k not in ("splits",))
    cls = DATASETS.get(name)
    dataset = cls(root=None)
    assert tuple(card.get("classes") or ()) == cls.class_names
    assert list(card["splits"]) == list(cls.splits)
    if cls.split_mode == "committed":
        assert file_sha256(split_file(name)) == card["split_file"]["sha256"]
        for split, ids in read_split_csv(split_file(name)).items():
            assert checksum_ids(sorted(ids)) == card["splits"][split]["ids_sha256"]
    assert dataset.card is card


def test_every_card_has_a_loader():
    assert sorted(set(card_ids()) - set(REAL)) == []


def test_unknown_option_and_edited_split_file(tmp_path, monkeypatch):
    cls = DATASETS.get("ph2")
    with pytest.raises(DataError, match="unknown option\\(s\\) colour; valid options: none"):
        cls(root=tmp_path, colour=1)
    card = dict(load_card("ph2"))
    card["split_file"] = {"sha256": "0" * 64}
    monkeypatch.setattr("bench.data.real.load_card", lambda _id: card)
    with pytest.raises(DataError, match="split file checksum .* differs from the card"):
        cls(root=tmp_path)._committed_assignment()

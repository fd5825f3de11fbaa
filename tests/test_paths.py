"""Where shipped records are found: in a checkout, and in a non-editable install (tox and CI install that way)."""
from __future__ import annotations

import json
from pathlib import Path

from bench import dry_run, paths
from bench.sweep.plan import history_folders, shipped_ids
from bench.tables.reproduce import default_record_dirs


def test_a_checkout_reads_its_own_leaderboard_folder() -> None:
    root = paths.source_root()
    if root is not None:
        assert paths.leaderboard_dirs() == [root / "results" / "leaderboard"]


def test_an_installed_package_reads_the_shipped_copy_and_the_current_directory(tmp_path, monkeypatch) -> None:
    shipped = tmp_path / "prefix" / "share" / "medsynth-bench" / "results" / "leaderboard"
    shipped.mkdir(parents=True)
    (shipped / "seg-aug__x__s0__abc.json").write_text(json.dumps({"protocol_hash": "feedbeef" * 8}))
    own = tmp_path / "cwd" / "results" / "leaderboard"
    own.mkdir(parents=True)
    (own / "seg-aug__mine__s0__def.json").write_text(json.dumps({"protocol_hash": "0badf00d" * 8}))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(paths, "source_root", lambda: None)
    monkeypatch.setattr(paths, "installed_data", lambda *parts: shipped if parts == ("results", "leaderboard") else None)

    assert paths.leaderboard_dirs() == [Path.cwd() / "results" / "leaderboard", shipped]
    assert dry_run._shipped_protocols() == {"feedbeef" * 8, "0badf00d" * 8}
    assert shipped_ids() == {"seg-aug__x__s0__abc", "seg-aug__mine__s0__def"}
    assert shipped in default_record_dirs() and shipped in history_folders(tmp_path / "w")

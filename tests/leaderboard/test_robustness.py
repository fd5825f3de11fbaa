"""Hostile files never break the leaderboard: refused artefact keys, deeply nested JSON, a build that fails midway."""
from __future__ import annotations

import json

import pytest

import bench.leaderboard.site as site
from bench.leaderboard.site import build_site
from bench.leaderboard.submit import submit

NESTED = "[" * 200_000 + "]" * 200_000


def test_an_artefact_key_with_a_path_is_refused(tmp_path, valid_record, dump_record):
    (tmp_path / "grid.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    valid_record["artifacts"] = {"a/../b": "grid.png"}
    (verdict,) = submit([dump_record(tmp_path / "r.json", valid_record)], tmp_path / "lb")
    assert not verdict.accepted and verdict.reason == "artefact key 'a/../b' is not a plain name (letters, digits, '_' and '-')"


def test_deeply_nested_json_is_one_line_and_the_batch_goes_on(tmp_path, valid_record, dump_record):
    nested = tmp_path / "nested.json"
    nested.write_text(NESTED)
    good = dump_record(tmp_path / "r.json", valid_record)
    verdicts = submit([nested, good], tmp_path / "lb")
    assert [v.accepted for v in verdicts] == [False, True]
    assert verdicts[0].reason == "not a record: the JSON is nested too deeply to read"
    # the site build skips it with a warning instead of aborting
    (tmp_path / "lb" / "zz-nested.json").write_text(NESTED)
    summary = build_site([tmp_path / "lb"], tmp_path / "site")
    assert summary.n_records == 1


def test_a_failed_build_leaves_the_previous_site_in_place(tmp_path, monkeypatch, site_records):
    out, records = tmp_path / "site", site_records(tmp_path / "records")
    build_site([records], out, generated="2026-11-23T12:00:00Z")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble while writing the paper tables")

    monkeypatch.setattr(site, "_tables_page", broken)
    with pytest.raises(RuntimeError):
        build_site([records], out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-built folder left  # no half-built folder left
    assert json.loads((out / "records" / next((out / "records").iterdir()).name).read_text())["run_id"]


def test_leaderboard_files_are_readable_by_everyone(tmp_path, valid_record, dump_record):
    import os
    import stat

    old = os.umask(0o022)
    try:
        (verdict,) = submit([dump_record(tmp_path / "r.json", valid_record)], tmp_path / "lb")
    finally:
        os.umask(old)
    assert verdict.accepted
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "lb").iterdir()} == {0o644}


def test_an_artefact_key_with_a_path_in_a_stored_record_cannot_break_the_build(tmp_path, site_records):
    """A record put into the leaderboard folder by hand (not through bench submit) with a key like a/../b."""
    records = site_records(tmp_path / "records")
    record = json.loads((records / "r-a-1.json").read_text())
    record["artifacts"] = {"a/../b": "grid.png", "../../x": "grid.png"}
    (records / "r-a-1.json").write_text(json.dumps(record))
    summary = build_site([records], tmp_path / "site")
    assert summary.n_records == 5
    assert all(p.resolve().is_relative_to((tmp_path / "site").resolve()) for p in (tmp_path / "site").rglob("*"))


def test_a_huge_file_is_one_line_at_submit_and_skipped_at_build(tmp_path, valid_record, dump_record, site_records,
                                                                 record_template):
    from bench.store import MAX_RECORD_BYTES

    huge = tmp_path / "huge.json"  # schema-valid: only its size is wrong
    huge.write_text(json.dumps(record_template(run_id="r-huge", comparisons={"pad": "x" * (MAX_RECORD_BYTES + 1)})))
    verdicts = submit([huge, dump_record(tmp_path / "r.json", valid_record)], tmp_path / "lb")
    assert [v.accepted for v in verdicts] == [False, True]
    assert verdicts[0].reason == f"file is {huge.stat().st_size} bytes, more than the {MAX_RECORD_BYTES} allowed for a record"
    records = site_records(tmp_path / "records")
    (records / "zz-huge.json").write_bytes(huge.read_bytes())
    assert build_site([records], tmp_path / "site").n_records == 5

import json
import math
import os
import threading

import pytest

from bench import store


def minimal_record(run_id="t__m__d__mini__s0__abcdef12", seed=0, dice=0.5):
    return {
        "schema_version": 1, "run_id": run_id, "created": "2026-01-01T00:00:00Z",
        "task": {"id": "seg-aug", "version": 1},
        "dataset": {"id": "derm-mini", "splits": {"test": "0" * 64}},
        "method": {"id": "m", "version": "1"}, "profile": "mini", "seed": seed,
        "config": {"task": {}, "method": {}}, "protocol_hash": "a" * 64,
        "metrics": {"dice": dice}, "metric_info": {"dice": {"higher_is_better": True}},
        "per_model": {"unet": {"dice": dice}}, "timings": {"fit": 1.0}, "peak_memory_mb": {"fit": 10.0},
        "environment": {"python": "3.11", "device": "cpu", "packages": {}},
    }


def test_schema_accepts_minimal_and_rejects_bad(tmp_path):
    store.validate_record(minimal_record())
    bad = minimal_record()
    del bad["metrics"]
    with pytest.raises(store.RecordError, match="'metrics' is a required property"):
        store.validate_record(bad)
    bad = minimal_record()
    bad["protocol_hash"] = "xyz"
    with pytest.raises(store.RecordError, match="protocol_hash"):
        store.validate_record(bad)
    bad = minimal_record(run_id="../escape")
    with pytest.raises(store.RecordError, match="run_id"):
        store.write_record(bad, tmp_path)


def test_nan_becomes_null_and_roundtrip(tmp_path):
    rec = minimal_record(dice=float("nan"))
    path = store.write_record(rec, tmp_path)
    back = store.read_record(path)
    assert back["metrics"]["dice"] is None
    assert "NaN" not in path.read_text()


def test_read_refuses_non_json_and_nan_literals(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("not json")
    with pytest.raises(store.RecordError, match="not a JSON record"):
        store.read_record(p)
    p.write_text(json.dumps(minimal_record()).replace('"dice": 0.5', '"dice": NaN'))
    with pytest.raises(store.RecordError, match="not a JSON record"):
        store.read_record(p)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    store.atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_concurrent_writers_never_produce_partial_files(tmp_path):
    target = tmp_path / "r.json"
    payloads = [json.dumps({"k": i, "pad": "x" * 20000}) for i in range(8)]
    threads = [threading.Thread(target=store.atomic_write_text, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in payloads


def test_records_table_mean_std_over_seeds(tmp_path):
    for seed, dice in [(0, 0.5), (1, 0.7), (2, 0.6)]:
        store.write_record(minimal_record(run_id=f"r{seed}", seed=seed, dice=dice), tmp_path)
    df = store.records_table(tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert math.isclose(row["dice"], 0.6) and math.isclose(row["dice_std"], 0.1) and row["n_seeds"] == 3
    assert store.records_table(tmp_path, task="other").empty


def test_records_table_keeps_config_variants_apart_and_the_newest_rerun(tmp_path):
    def didgen(run_id, dice, ca_guidance, created):
        rec = minimal_record(run_id=run_id, dice=dice)
        rec.update(method={"id": "didgen", "version": "1"}, created=created,
                   config={"task": {}, "method": {"ca_guidance": ca_guidance}})
        return rec

    store.write_record(didgen("d0", 0.90, True, "2026-01-01T00:00:00Z"), tmp_path)
    store.write_record(didgen("n0", 0.80, False, "2026-01-02T00:00:00Z"), tmp_path)
    store.write_record(didgen("d0b", 0.92, True, "2026-01-03T00:00:00Z"), tmp_path)  # seed 0 rerun: replaces d0
    df = store.records_table(tmp_path).set_index("variant")
    assert set(df.index) == {"-", "ca_guidance=False"}
    assert math.isclose(df.loc["-", "dice"], 0.92) and df.loc["-", "n_seeds"] == 1
    assert math.isclose(df.loc["ca_guidance=False", "dice"], 0.80)


def test_protocol_hash_depends_on_splits_and_config():
    h = store.protocol_hash("t", 1, {"a": 1}, {"test": "x"})
    assert h == store.protocol_hash("t", 1, {"a": 1}, {"test": "x"})
    assert h != store.protocol_hash("t", 1, {"a": 2}, {"test": "x"})
    assert h != store.protocol_hash("t", 1, {"a": 1}, {"test": "y"})
    assert h != store.protocol_hash("t", 2, {"a": 1}, {"test": "x"})


def test_a_record_and_its_files_carry_content_hashes_that_reveal_an_edit(tmp_path):
    rec = minimal_record()
    rec["per_sample_file"] = "r.scores.csv"
    (tmp_path / "r.scores.csv").write_text("model,arm,id,dice\nunet,m,a,0.5\n")
    path = store.write_record(rec, tmp_path)
    written = json.loads(path.read_text())
    assert store.check_provenance(written, tmp_path) == []
    assert set(written["provenance"]["files"]) == {"r.scores.csv"}
    edited = json.loads(path.read_text())
    edited["metrics"]["dice"] = 0.999
    assert store.check_provenance(edited, tmp_path) == ["the record was edited after its run (its content hash differs)"]
    (tmp_path / "r.scores.csv").write_text("model,arm,id,dice\nunet,m,a,0.9\n")
    assert store.check_provenance(written, tmp_path) == ["r.scores.csv was edited after the run (its content hash differs)"]
    forged = dict(written, provenance={"files": {"r.scores.csv": store.file_digest(tmp_path / "r.scores.csv")},
                                        "record_sha256": written["provenance"]["record_sha256"]})
    assert store.check_provenance(forged, tmp_path) == ["the record was edited after its run (its content hash differs)"]
    assert store.check_provenance(minimal_record(), tmp_path) == [
        "the record carries no provenance hashes (bench run writes them with every record since 2026-12-05)"]


def test_atomic_path_renames_on_success_and_leaves_nothing_when_interrupted(tmp_path) -> None:
    from bench.store import atomic_path

    target = tmp_path / "sub" / "arm.ckpt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == store.new_file_mode()
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["arm.ckpt"]

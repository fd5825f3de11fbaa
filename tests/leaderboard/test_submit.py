"""bench/leaderboard/submit.py: accepted records land atomically in the leaderboard; every bad case is refused."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bench.leaderboard.cli import submit_command
from bench.leaderboard.submit import SubmissionError, leaderboard_path, submit, write_new
from bench.store import check_provenance


def one(tmp_path: Path, path: Path, **kw):
    verdicts = submit([path], tmp_path / "lb", **kw)
    assert len(verdicts) == 1
    return verdicts[0]


def leaderboard_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "lb").iterdir())


def test_accepts_a_valid_record_and_copies_it(tmp_path, valid_record, dump_record) -> None:
    submitted = dump_record(tmp_path / "r.json", valid_record)
    verdict = one(tmp_path, submitted)
    assert verdict.accepted, verdict.reason
    stored = tmp_path / "lb" / f"{valid_record['run_id']}.json"
    assert verdict.destination == stored.resolve()
    assert json.loads(stored.read_text()) == json.loads(submitted.read_text())  # content hashes included
    assert leaderboard_files(tmp_path) == [stored.name, valid_record["per_sample_file"]]  # no temporary files left
    assert "(2 file(s) stored" in verdict.reason


def test_real_runner_record_is_accepted(tmp_path) -> None:
    """A record written by `bench run` (smoke profile, kept small) passes every check when smoke is allowed."""
    from bench.runner import RunConfig, run_one

    record, path = run_one(RunConfig(task="seg-aug", method="real-only", profile="smoke", work_dir=tmp_path / "runs",
                                     device="cpu", progress=False, sets=("task.max_epochs=1", "task.segmenters=[unet]", "task.n_generate=4",
                                           "task.dataset_options={sizes: {train: 16, val: 8, test: 8}}")))
    assert not one(tmp_path, path).accepted  # smoke is not ranked by default
    verdict = one(tmp_path, path, allow_profiles=("mini", "paper", "smoke"))
    assert verdict.accepted, verdict.reason
    stored = json.loads(verdict.destination.read_text())
    assert stored["per_sample_file"] == f"{record['run_id']}.scores.csv"
    assert sorted(leaderboard_files(tmp_path)) == sorted([f"{record['run_id']}.json", stored["per_sample_file"]]
                                                        + list(stored["artifacts"].values()))


def test_png_artefacts_and_scores_come_along_only_from_the_record_folder(tmp_path, valid_record, dump_record) -> None:
    """Only PNG artefacts and the CSV scores beside the record are stored, under the leaderboard's names; the stored
    copy's content hashes are those of what it stores. A record naming a file outside its folder is refused."""
    src = tmp_path / "run"
    src.mkdir()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    (src / "grid.png").write_bytes(png)
    (src / "fake.png").write_text("print('not a png')")
    (tmp_path / "outside.png").write_bytes(png)
    dump_record(tmp_path / "x.json", valid_record)  # writes the record's consistent scores beside it
    (src / "scores.csv").write_text((tmp_path / valid_record["per_sample_file"]).read_text())
    for escape in ("../outside.png", str(tmp_path / "outside.png")):
        rec = dict(valid_record, artifacts={"samples": "grid.png", "escape": escape}, per_sample_file="scores.csv")
        verdict = one(tmp_path, dump_record(src / "r.json", rec))
        assert not verdict.accepted and verdict.reason == f"{escape} is missing beside the record"
    rec = dict(valid_record, artifacts={"samples": "grid.png", "fake": "fake.png"}, per_sample_file="scores.csv")
    verdict = one(tmp_path, dump_record(src / "r.json", rec))
    assert verdict.accepted and "not taken: artifacts.fake" in verdict.reason
    assert "(3 file(s) stored" in verdict.reason  # the record, its scores and one sample grid
    run_id = rec["run_id"]
    assert sorted(leaderboard_files(tmp_path)) == sorted([f"{run_id}.json", f"{run_id}.samples.png", f"{run_id}.scores.csv"])
    stored = json.loads((tmp_path / "lb" / f"{run_id}.json").read_text())
    assert stored["artifacts"] == {"samples": f"{run_id}.samples.png"} and stored["per_sample_file"] == f"{run_id}.scores.csv"
    assert (tmp_path / "lb" / f"{run_id}.samples.png").read_bytes() == png
    assert check_provenance(stored, tmp_path / "lb") == []


@pytest.mark.parametrize("case,expected", [
    ("schema", "does not follow schema"),
    ("protocol", "protocol hash mismatch"),
    ("unknown_task", "Unknown task 'seg-aug-v2'"),
    ("unknown_metric", "unknown metric 'sharpness'"),
    ("unknown_model_metric", "unknown metric 'dice_score' in per_model.unet"),
    ("out_of_range", "dice=1.7 is outside [0.0, 1.0]"),
    ("negative_fd", "outside [0.0, None]"),
    ("direction", "higher_is_better is False, the metric catalogue says True"),
    ("smoke", "profile 'smoke' is not ranked"),
    ("bad_split_config", "cannot verify the protocol hash"),
])
def test_refuses_bad_records(tmp_path, valid_record, dump_record, case, expected) -> None:
    rec = valid_record
    if case == "schema":
        del rec["metrics"]
    elif case == "protocol":
        rec["config"]["task"]["lr"] = 0.5  # a different protocol than the one the hash was computed for
    elif case == "unknown_task":
        rec["task"]["id"] = "seg-aug-v2"
    elif case == "unknown_metric":
        rec["metrics"]["sharpness"] = 0.3
    elif case == "unknown_model_metric":
        rec["per_model"]["unet"]["dice_score"] = 0.3
    elif case == "out_of_range":
        rec["metrics"]["dice"] = 1.7
    elif case == "negative_fd":
        rec["metrics"]["fd[mini-clip]"] = -2.0
    elif case == "direction":
        rec["metric_info"]["dice"]["higher_is_better"] = False
    elif case == "smoke":
        rec["profile"] = "smoke"
    elif case == "bad_split_config":
        rec["config"]["task"]["no_such_key"] = 1
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", rec))
    assert not verdict.accepted
    assert expected in verdict.reason, verdict.reason
    assert "\n" not in verdict.reason
    assert leaderboard_files(tmp_path) == []


def test_refuses_duplicates(tmp_path, valid_record, dump_record) -> None:
    first = dump_record(tmp_path / "a.json", valid_record)
    assert one(tmp_path, first).accepted
    again = one(tmp_path, first)
    assert not again.accepted and "already on the leaderboard" in again.reason
    renamed = dict(valid_record, run_id=valid_record["run_id"] + "-copy")
    same_run = one(tmp_path, dump_record(tmp_path / "b.json", renamed))
    assert not same_run.accepted and f"already accepted as '{valid_record['run_id']}'" in same_run.reason
    # a variant of the method (another resolved config, e.g. DiDGen's DermPrompt row of Table 4.1) is its own entry
    config = {**valid_record["config"], "method": {**valid_record["config"]["method"], "variant": "other"}}
    variant = dict(valid_record, run_id=valid_record["run_id"] + "-variant", config=config)
    assert one(tmp_path, dump_record(tmp_path / "v.json", variant)).accepted
    # twice within one submission
    other = dict(valid_record, seed=1, run_id="seg-aug__classic-aug__derm-mini__mini__s1__00000000")
    path = dump_record(tmp_path / "c.json", other)
    verdicts = submit([path, path], tmp_path / "lb")
    assert [v.accepted for v in verdicts] == [True, False]
    assert len(leaderboard_files(tmp_path)) == 6  # three records, each with its per-sample scores


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("content,expected", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not UTF-8"),
    (b"{'run_id': 'x'}", "not JSON"),
    (b'{"metrics": {"dice": NaN}}', "NaN is not valid JSON"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"[1, 2, 3]", "top level is a list"),
    (b"", "not JSON"),
    (b"42", "top level is a int"),
])
def test_refuses_non_json_content(tmp_path, content, expected) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and expected in verdict.reason, verdict.reason


def test_pickles_are_never_loaded(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "record.json"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    verdict = one(tmp_path, path)
    assert not verdict.accepted and "not JSON" in verdict.reason
    assert not marker.exists()


def test_no_path_outside_the_leaderboard_can_be_written(tmp_path, valid_record, dump_record) -> None:
    for run_id in ("../escape", "../../escape", "/tmp/escape", "..", ".hidden", "sub/dir", "a\\..\\b"):
        rec = dict(valid_record, run_id=run_id)
        verdict = one(tmp_path, dump_record(tmp_path / "r.json", rec))
        assert not verdict.accepted, run_id
    assert leaderboard_files(tmp_path) == []
    assert not (tmp_path / "escape.json").exists() and not Path("/tmp/escape.json").exists()
    for bad in ("../x", "..", "", "a/b", ".x"):
        with pytest.raises(SubmissionError):
            leaderboard_path(bad, tmp_path / "lb")
    assert leaderboard_path("a..b", tmp_path).name == "a..b.json"


def test_directories_missing_files_and_huge_files_are_refused(tmp_path, monkeypatch) -> None:
    assert "no such file" in one(tmp_path, tmp_path / "missing.json").reason
    (tmp_path / "dir.json").mkdir()
    assert "not a regular file" in one(tmp_path, tmp_path / "dir.json").reason
    import bench.leaderboard.submit as sub

    monkeypatch.setattr(sub, "MAX_RECORD_BYTES", 10)
    (tmp_path / "big.json").write_text("{" + " " * 20 + "}")
    assert "more than the 10 allowed" in one(tmp_path, tmp_path / "big.json").reason


def test_protocol_check_is_one_seam(tmp_path, valid_record, dump_record) -> None:
    """The recomputation is injected: a refusal from it is reported as the reason."""
    def refuse(record):
        raise SubmissionError("cannot verify the protocol hash: dataset 'derm-mini' is gone")

    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record), protocol_hash_of=refuse)
    assert not verdict.accepted and "is gone" in verdict.reason
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record), protocol_hash_of=lambda r: "f" * 64)
    assert "protocol hash mismatch" in verdict.reason


def test_write_new_never_replaces(tmp_path) -> None:
    dest = tmp_path / "x.json"
    write_new(dest, "one")
    with pytest.raises(FileExistsError):
        write_new(dest, "two")
    assert dest.read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_cli_reports_one_line_per_file_and_exit_status(tmp_path, valid_record, dump_record) -> None:
    app = typer.Typer()
    app.command("submit")(submit_command)
    app.command("other")(lambda: None)
    good = dump_record(tmp_path / "good.json", valid_record)
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    result = CliRunner().invoke(app, ["submit", str(good), str(bad), "--leaderboard", str(tmp_path / "lb")])
    assert result.exit_code == 1
    assert f"accepted {good}" in result.output and f"refused {bad}: not JSON" in result.output
    assert "1 accepted, 1 refused" in result.output
    result = CliRunner().invoke(app, ["submit", str(good), "--leaderboard", str(tmp_path / "lb2"), "--dry-run"])
    assert result.exit_code == 0 and not (tmp_path / "lb2" / f"{valid_record['run_id']}.json").exists()

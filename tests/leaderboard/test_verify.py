"""`bench verify`: a rerun from the record's own configs matches it; an edited value is found."""
import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.leaderboard.verify import verify
from bench.paths import project_dir
from bench.runner import RunConfig, run_one

FAST = ["task.segmenters=[unet]", "task.max_epochs=2", "task.n_generate=8"]


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    record, path = run_one(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", seed=1, sets=FAST,
                                     work_dir=work, threads=1, progress=False))
    return path


def _copy(path, dest):
    dest.mkdir()
    shutil.copy(path, dest / path.name)
    record = json.loads(path.read_text())
    shutil.copy(path.parent / record["per_sample_file"], dest / record["per_sample_file"])
    return dest / path.name, dest / record["per_sample_file"]


def test_a_fresh_record_reruns_bit_for_bit(smoke_record):
    result = verify(smoke_record)
    assert result.exact and result.matched, [vars(d) for d in result.differences]
    assert result.rerun_id == json.loads(smoke_record.read_text())["run_id"]
    assert result.compared > 50 and result.identical == result.compared  # every per-sample score counted


def test_an_edited_per_sample_score_is_reported(smoke_record, tmp_path):
    record, scores = _copy(smoke_record, tmp_path / "edited")
    rows = list(csv.DictReader(scores.open()))
    rows[3]["dice"] = str(float(rows[3]["dice"]) * 0.5 + 0.25)
    with scores.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = CliRunner().invoke(app, ["verify", str(record)])
    assert out.exit_code == 1, out.output
    ident = "/".join(rows[3][k] for k in ("model", "arm", "id"))
    assert f"per_sample[{ident}].dice: recorded {rows[3]['dice']}" in out.output
    assert out.output.strip().splitlines()[-1].startswith("not verified: 1 of ")


def test_an_edited_headline_metric_is_reported(smoke_record, tmp_path):
    record, _ = _copy(smoke_record, tmp_path / "edited")
    data = json.loads(record.read_text())
    data["metrics"]["dice"] = 0.999
    record.write_text(json.dumps(data))
    result = verify(record)
    assert [d.where for d in result.differences] == ["metrics.dice"] and not result.matched


def test_a_missing_source_run_is_one_error_line(tmp_path):
    # a baseline conditioned on another run's generated masks (DiDGen's in chapter 4, MedDiff-FT's in its Table 2)
    shipped = sorted((project_dir() / "results" / "leaderboard").glob("seg-aug__controlnet__*.json"))[0]
    source = json.loads(shipped.read_text())["config"]["task"]["mask_source"]
    assert source.startswith(("seg-aug__didgen__", "seg-aug__meddiff-ft__"))
    out = CliRunner().invoke(app, ["verify", str(shipped)])
    assert out.exit_code == 2 and out.output.count("\n") == 1
    assert f"depends on run {source[:30]}" in out.output and "--sources" in out.output


def test_a_shipped_mini_record_reruns_here():
    from bench.store import computed_here, repeatability_key

    shipped = project_dir() / "results" / "leaderboard" / "derm-quality__real-only__derm-mini__mini__s0__0786e6e2.json"
    record = json.loads(shipped.read_text())
    result = verify(shipped)
    assert result.matched, [vars(d) for d in result.differences]
    # exact only where the record was made in this environment; elsewhere (or made before records named their
    # CPU) compared within tolerance, and the verdict says why
    here = {**computed_here(), "torch_threads": record["environment"].get("torch_threads")}  # verify reruns at those
    made_here = repeatability_key(record["environment"]) == here and not record["environment"].get("reused")
    assert result.exact == made_here
    if not made_here:
        assert result.environment_differences and "within tolerance" in result.summary()


def test_a_matched_verification_is_stamped_beside_the_record(smoke_record, tmp_path):
    import yaml

    record, _ = _copy(smoke_record, tmp_path / "stamped")
    out = CliRunner().invoke(app, ["verify", str(record), "--stamp"])
    assert out.exit_code == 0, out.output
    run_id = json.loads(record.read_text())["run_id"]
    stamp = yaml.safe_load((record.parent / f"{run_id}.verified.yaml").read_text())
    assert stamp["matched"] is True and stamp["exact"] is True and stamp["run_id"] == run_id


def test_a_record_whose_scores_file_predates_the_split_column(smoke_record, tmp_path):
    """Shipped seg-aug records hold test rows only, without a split column: the rerun's test rows are compared."""
    record_path, scores = _copy(smoke_record, tmp_path / "legacy")
    with scores.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows} == {"test", "ph2"}
    kept = [{k: v for k, v in r.items() if k != "split"} for r in rows if r["split"] == "test"]
    with scores.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    result = verify(record_path)
    assert result.matched, [vars(d) for d in result.differences]
    assert "only the 'test' rows compared" in result.summary()


def test_a_record_names_the_caches_it_reused_from_another_environment(tmp_path):
    """The real-only arm is cached across the methods of a seed, the stages across runs: a run that reads one made
    on another CPU kernel set or thread count (a campaign spanning machines) names it under environment.reused,
    and `bench verify` then compares within tolerance, saying why."""
    work = tmp_path / "work"

    def run(method):
        return run_one(RunConfig(task="seg-aug", method=method, profile="smoke", seed=1, sets=FAST, work_dir=work,
                                 threads=1, progress=False))

    first, _ = run("classic-aug")
    assert "reused" not in first["environment"]
    (arm,) = [p for p in (work / "cache" / "arms").glob("real-unet-*.json") if not p.name.endswith(".env.json")]
    noted = arm.with_name(arm.name + ".env.json")
    elsewhere = {**json.loads(noted.read_text()), "cpu_capability": "NO AVX"}
    noted.write_text(json.dumps(elsewhere))

    record, path = run("noise")
    assert record["environment"]["reused"] == {"real-only arm unet": elsewhere}
    result = verify(path)
    assert result.matched and not result.exact and not result.environment_differences
    assert ("within tolerance (abs 0.01, rel 0.05) because the record reused caches made in another environment: "
            "real-only arm unet (NO AVX, 1 thread)") in result.summary()

    # the same run again reads all three stages from the cache: a stage from before environments were noted is
    # "unknown", and the evaluation passes on the arm it reused
    done = work / record["stages"]["fit"] / "done.json"
    done.write_text(json.dumps({k: v for k, v in json.loads(done.read_text()).items() if k != "environment"}))
    again, _ = run("noise")
    assert again["cached"] == {"fit": True, "generate": True, "evaluate": True}
    assert again["environment"]["reused"] == {"fit stage": "unknown", "real-only arm unet": elsewhere}


def test_across_environments_per_sample_scores_are_compared_by_their_means_per_model_and_arm():
    """Another CPU kernel set trains other segmenters: single images move (busi-mini: one IoU 0.33 -> 0.81) while
    the means hold. Within tolerance the rows must be the same rows and each column's mean per model, arm and split
    must agree; exact mode still compares every value."""
    from bench.leaderboard.verify import compare

    def rows(dice):
        return [{"model": "unet", "arm": arm, "id": f"img{i}", "dice": str(d)}
                for arm, values in (("real-only", dice), ("augmented", [0.8, 0.8]))
                for i, d in enumerate(values)]

    record = {"metrics": {"dice": 0.8}}
    recorded, rerun = rows([0.33, 0.95]), rows([0.81, 0.47])  # each image moved, the arm's mean 0.64 held
    count, diffs, notes = compare(record, record, recorded, rerun, exact=False)
    assert diffs == [] and count == 1 + 2 + 4  # the metric, two group means, four row ids
    assert "one by one, 2 of 4 moved by more than the tolerance" in notes[0]
    exact = compare(record, record, recorded, rerun, exact=True)[1]
    assert [d.where for d in exact] == ["per_sample[unet/real-only/img0].dice", "per_sample[unet/real-only/img1].dice"]

    shifted = rows([0.81, 0.55])  # the arm's mean moved by 0.04
    (diff,) = compare(record, record, recorded, shifted, exact=False)[1]
    assert diff.where == "per_sample[unet/real-only].mean(dice)" and diff.rerun == pytest.approx(0.68)
    other_rows = [{**r, "id": "img9"} if r["id"] == "img1" and r["arm"] == "real-only" else r for r in rerun]
    assert [d.where for d in compare(record, record, recorded, other_rows, exact=False)[1]] == ["per_sample[1] row"]


def test_the_tolerance_of_an_unbounded_value_near_zero_is_absolute():
    from bench.leaderboard.verify import _close

    assert _close(-0.020, -0.026, exact=False)  # a mean logit: 26 % relative, 0.006 absolute (cxr-mini on AVX-512)
    assert not _close(-0.02, -0.04, exact=False)
    assert _close(100.0, 104.9, exact=False) and not _close(100.0, 106.0, exact=False)  # FD: 5 % relative
    assert not _close(-0.020, -0.026, exact=True)


def test_class_predictions_have_no_mean_across_environments():
    """skin-tone's per-sample file holds label and pred (class indices): their 'mean' is no score. Across
    environments they are left out of the means and the verdict counts the rows that predict another class."""
    from bench.leaderboard.verify import compare

    recorded = [{"id": "a", "label": "0", "pred": "0", "p[I-II]": "0.6"}, {"id": "b", "label": "2", "pred": "2", "p[I-II]": "0.1"}]
    rerun = [{"id": "a", "label": "0", "pred": "1", "p[I-II]": "0.605"}, {"id": "b", "label": "2", "pred": "2", "p[I-II]": "0.1"}]
    count, diffs, notes = compare({}, {}, recorded, rerun, exact=False, categorical=("label", "pred"))
    assert diffs == [] and count == 1 + 2  # mean(p[I-II]) and two row ids
    assert notes[0].endswith("1 of 2 rows predict another class")
    assert [d.where for d in compare({}, {}, recorded, rerun, exact=False)[1]] == ["per_sample.mean(pred)"]


def test_a_difference_across_environments_says_where_an_exact_check_can_be_made():
    from bench.leaderboard.verify import Difference, Verification

    result = Verification("r", False, {"cpu_capability": ("AVX2", "AVX512")}, 11, [Difference("metrics.f1", 0.5, 0.54)])
    assert result.summary().endswith("an exact check needs the record's cpu_capability AVX2")


def test_the_submitting_guide_shows_what_bench_verify_prints(smoke_record, tmp_path):
    """docs/submitting.md section 4 quotes bench verify's verdicts on this smoke record, as is and with one per-sample
    Dice edited (the guide's command is the fixture's run)."""
    guide = (project_dir() / "docs" / "submitting.md").read_text()
    assert verify(smoke_record).summary() in guide
    record, scores = _copy(smoke_record, tmp_path / "edited")
    rows = list(csv.DictReader(scores.open()))
    rows[3]["dice"] = str(round(float(rows[3]["dice"]) * 0.5 + 0.25, 6))
    with scores.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    edited = verify(record)
    assert edited.summary() in guide
    (diff,) = edited.differences
    assert f"  {diff.where}: recorded {diff.recorded}, rerun {diff.rerun}" in guide

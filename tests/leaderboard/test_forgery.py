"""Records edited after their run, as a hostile submitter would edit them: each is refused with its own line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.leaderboard.submit import default_leaderboard_dir, submit
from bench.runner import RunConfig, run_one
from bench.store import named_files, with_provenance

SMALL = ("task.max_epochs=2", "task.segmenters=[unet]", "task.n_generate=4",
         "task.dataset_options={sizes: {train: 16, val: 8, test: 8}}")


def one(tmp_path: Path, path: Path, **kw):
    (verdict,) = submit([path], tmp_path / "lb", **kw)
    return verdict


def _copy_shipped(pattern: str, dest: Path) -> tuple[dict, Path]:
    src = sorted(default_leaderboard_dir().glob(pattern))[0]
    record = json.loads(src.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for named in src.parent.glob(f"{src.stem}.*"):  # per-sample scores and artefacts: the content hashes cover them
        if named != src:
            shutil.copy(named, dest / named.name)
    return record, dest


def copy_named(record: dict, src: Path, dest: Path) -> None:
    """The files a record names (per-sample scores, sample grid), copied beside its forged copy."""
    for name in named_files(record):
        shutil.copy(src / name, dest / name)


def reseal(path: Path, record: dict) -> Path:
    """Write a forged record with fresh content hashes, as a forger would: anyone can recompute them, so the checks
    under them must catch the edit on their own."""
    path.write_text(json.dumps(with_provenance(record, path.parent)))
    return path


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("runs")
    record, path = run_one(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", work_dir=work, seed=0,
                                     threads=1, progress=False, sets=SMALL))
    return record, path


def test_a_shipped_record_copied_as_another_seed_with_better_scores(tmp_path):
    record, folder = _copy_shipped("seg-aug__didgen__derm-mini__mini__s0__e4f9b7e6.json", tmp_path / "forged")
    record["seed"], record["run_id"] = 1, record["run_id"].replace("__s0__", "__s1__")
    record["metrics"].update(dice=0.999, iou=0.999)
    path = folder / "r.json"
    reseal(path, record)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and verdict.reason.startswith("metrics.dice is 0.999, the mean of its per-model")


def test_a_headline_that_disagrees_with_the_per_model_values(tmp_path, valid_record, dump_record):
    valid_record["per_model"]["unet"]["dice"] += 0.05
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted and verdict.reason.startswith("per_model.unet.dice is ")


def test_a_comparison_that_does_not_recompute(tmp_path, valid_record, dump_record):
    valid_record["comparisons"]["relative_gain"]["iou"] = 0.5
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted and verdict.reason.startswith("comparisons.relative_gain.iou is 0.5")
    valid_record["comparisons"]["relative_gain"].pop("iou")
    valid_record["comparisons"]["paired_ttest"]["dice"]["p"] = 1e-30
    verdict = one(tmp_path, dump_record(tmp_path / "s.json", valid_record))
    assert not verdict.accepted and "comparisons.paired_ttest.dice (p = 1e-30) does not recompute" in verdict.reason


def test_a_record_without_per_sample_scores(tmp_path, valid_record, dump_record):
    valid_record["per_sample_file"] = None
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted and verdict.reason == "no per-sample file: task seg-aug's metrics must recompute from one"


def test_scores_of_other_images_than_the_test_split(tmp_path, valid_record, dump_record):
    path = dump_record(tmp_path / "r.json", valid_record)
    scores = tmp_path / valid_record["per_sample_file"]
    scores.write_text(scores.read_text().replace("dm-2018-test-00007", "dm-2018-train-00007"))
    reseal(path, valid_record)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and verdict.reason == "the per-sample ids of model unet are not the protocol's test split"


def test_a_smoke_record_relabelled_mini(tmp_path, smoke_run):
    record, path = smoke_run
    forged = dict(record, profile="mini", run_id=record["run_id"].replace("__smoke__", "__mini__"))
    copy_named(record, path.parent, tmp_path)
    target = tmp_path / "r.json"
    reseal(target, forged)
    verdict = one(tmp_path, target)
    assert not verdict.accepted
    assert verdict.reason.startswith("the record is labelled profile 'mini' but its configs are the 'smoke' profile's")


def test_a_mini_record_relabelled_paper_on_a_real_dataset(tmp_path, valid_record, dump_record):
    forged = dict(valid_record, profile="paper", dataset={**valid_record["dataset"], "id": "isic2018-task1"},
                  run_id=valid_record["run_id"].replace("__derm-mini__mini__", "__isic2018-task1__paper__"))
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", forged))
    assert not verdict.accepted
    assert verdict.reason == "the record says dataset 'isic2018-task1', its task config ran 'derm-mini'"


def test_a_run_id_that_names_another_seed(tmp_path, valid_record, dump_record):
    forged = dict(valid_record, seed=3)
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", forged))
    assert not verdict.accepted and verdict.reason == "the run id says seed 's0', the record says 's3'"


def test_an_edit_to_a_record_with_provenance(tmp_path, smoke_run):
    record, path = smoke_run
    edited = json.loads(path.read_text())
    edited["per_model"]["unet"]["dice"] = edited["metrics"]["dice"] = 0.99  # consistent with itself, not its scores
    folder = tmp_path / "e"
    folder.mkdir()
    copy_named(record, path.parent, folder)
    (folder / "r.json").write_text(json.dumps(edited))
    verdict = one(tmp_path, folder / "r.json", allow_profiles=("smoke",))
    assert not verdict.accepted and verdict.reason == "the record was edited after its run (its content hash differs)"


def test_a_record_without_content_hashes(tmp_path, smoke_run):
    """`bench run` writes provenance with every record: one without it was made by hand or stripped of it."""
    record, path = smoke_run
    stripped = {k: v for k, v in json.loads(path.read_text()).items() if k != "provenance"}
    copy_named(record, path.parent, tmp_path)
    (tmp_path / "r.json").write_text(json.dumps(stripped))
    verdict = one(tmp_path, tmp_path / "r.json", allow_profiles=("smoke",))
    assert not verdict.accepted
    assert verdict.reason == "the record carries no provenance hashes (bench run writes them with every record since 2026-12-05)"


def test_a_genuine_record_passes_and_the_cli_says_what_it_did(tmp_path, smoke_run):
    _, path = smoke_run
    runner = CliRunner()
    refused = runner.invoke(app, ["submit", str(path), "--leaderboard", str(tmp_path / "lb")])
    assert refused.exit_code == 1 and "--allow-smoke accepts smoke records" in refused.output
    dry = runner.invoke(app, ["submit", str(path), "--leaderboard", str(tmp_path / "lb"), "--allow-smoke", "--dry-run"])
    assert dry.exit_code == 0 and any(ln.startswith(f"would accept {path}") for ln in dry.output.splitlines()), dry.output
    assert "INFO     accepted" not in dry.output  # nothing says 'accepted' in a dry run
    assert "1 would be accepted (dry run: nothing stored), 0 refused" in dry.output
    assert not (tmp_path / "lb").exists() or not list((tmp_path / "lb").iterdir())
    real = runner.invoke(app, ["submit", str(path), "--leaderboard", str(tmp_path / "lb"), "--allow-smoke"])
    assert real.exit_code == 0, real.output
    stored = sorted(p.name for p in (tmp_path / "lb").iterdir())
    assert f"({len(stored)} file(s) stored" in real.output


# -- a profile is not a label: configs = the profile's defaults + the recorded overrides ---------------------------

def test_the_runner_records_what_it_put_over_the_profile(smoke_run):
    record, _ = smoke_run
    assert record["overrides"] == {"task": {"max_epochs": 2, "segmenters": ["unet"], "n_generate": 4,
                                            "dataset_options": {"sizes": {"train": 16, "val": 8, "test": 8}}},
                                   "method": {}}


def test_a_smoke_record_relabelled_mini_without_its_overrides(tmp_path, smoke_run):
    """Records written before `overrides` existed are held to the stated profile's own settings."""
    record, path = smoke_run
    forged = dict(record, profile="mini", run_id=record["run_id"].replace("__smoke__", "__mini__"))
    forged.pop("overrides")
    copy_named(record, path.parent, tmp_path)
    target = tmp_path / "r.json"
    reseal(target, forged)
    verdict = one(tmp_path, target)
    assert not verdict.accepted
    assert verdict.reason.startswith("the record is labelled profile 'mini' but its configs are the 'smoke' profile's")


def test_a_config_edited_beyond_its_recorded_overrides(tmp_path, smoke_run):
    record, path = smoke_run
    forged = json.loads(json.dumps(record))
    forged["config"]["method"]["degrees"] = 33.0  # a task key would change the protocol hash, refused before
    copy_named(record, path.parent, tmp_path)
    target = tmp_path / "r.json"
    reseal(target, forged)
    verdict = one(tmp_path, target, allow_profiles=("smoke",))
    assert not verdict.accepted
    assert verdict.reason == (f"config.method.degrees is 33.0, profile 'smoke' with the recorded overrides gives "
                              f"{json.dumps(record['config']['method']['degrees'])}")


def test_overrides_that_do_not_build_a_config(tmp_path, valid_record, dump_record):
    valid_record["overrides"] = {"task": {"no_such_key": 1}, "method": {}}
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted
    assert verdict.reason.startswith("the recorded overrides do not apply to profile 'mini': unknown task config key "
                                     "'no_such_key'")


def test_a_mini_record_relabelled_paper_keeping_its_dataset(tmp_path, valid_record, dump_record):
    forged = dict(valid_record, profile="paper", run_id=valid_record["run_id"].replace("__mini__", "__paper__"))
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", forged))
    assert not verdict.accepted
    assert verdict.reason.startswith("the record is labelled profile 'paper' but its configs are the 'mini' profile's")


def test_a_mini_record_relabelled_paper_in_the_record_only(tmp_path, valid_record, dump_record):
    """The issue's case as written: profile and dataset edited, the run id left alone."""
    forged = dict(valid_record, profile="paper", dataset={**valid_record["dataset"], "id": "isic2018-task1"})
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", forged))
    assert not verdict.accepted and verdict.reason == "the run id says dataset 'derm-mini', the record says 'isic2018-task1'"


def test_a_run_id_that_names_another_method(tmp_path, valid_record, dump_record):
    forged = dict(valid_record, method={**valid_record["method"], "id": "didgen"})
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", forged))
    assert not verdict.accepted and verdict.reason == "the run id says method 'classic-aug', the record says 'didgen'"


# -- every metric is recomputed or declared as not recomputable ------------------------------------------------------

def test_every_task_declares_which_metrics_recompute():
    from bench.registry import TASKS
    from bench.tasks.base import SampleScores

    undeclared = [t for t in TASKS.names() if not isinstance(getattr(TASKS.get(t), "sample_scores", None), SampleScores)]
    assert not undeclared


def test_a_metric_the_task_does_not_declare(tmp_path, valid_record, dump_record):
    valid_record["metrics"]["fd[mini-clip]"] = 3.0
    valid_record["metric_info"]["fd[mini-clip]"] = {"higher_is_better": False}
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted
    assert verdict.reason == ("metric 'fd[mini-clip]' of task seg-aug is neither recomputed from the per-sample scores "
                              "nor declared as not recomputable (Task.sample_scores)")


def test_a_task_without_a_declaration_is_not_silently_unchecked(tmp_path, valid_record, dump_record, monkeypatch):
    from bench.tasks.derm_seg import SegAugTask

    monkeypatch.delattr(SegAugTask, "sample_scores")
    verdict = one(tmp_path, dump_record(tmp_path / "r.json", valid_record))
    assert not verdict.accepted
    assert verdict.reason.startswith("task seg-aug does not declare which of its metrics recompute")


def test_a_classification_record_without_its_per_sample_file(tmp_path):
    src = sorted(default_leaderboard_dir().glob("derm-cls__didgen__*.json"))[0]
    record = json.loads(src.read_text())
    record["per_sample_file"] = None
    reseal(tmp_path / "r.json", record)
    verdict = one(tmp_path, tmp_path / "r.json")
    assert not verdict.accepted and verdict.reason == "no per-sample file: task derm-cls writes one with every run"


def test_test_split_ids_of_a_real_dataset_come_from_its_committed_split_file():
    from bench.leaderboard.checks import test_split_ids

    ids = test_split_ids({"config": {"task": {"dataset": "ph2"}}, "dataset": {"id": "ph2"}})
    assert ids is not None and len(ids) == 60 and ids == sorted(ids)
    assert test_split_ids({"config": {"task": {"dataset": "isic2018-task1"}}, "dataset": {"id": "isic2018-task1"}}) is None


def test_confusion_matrix_metrics_recompute_from_the_class_predictions(tmp_path):
    """derm-cls: accuracy, weighted and macro P/R/F1 follow from the per-image label/pred rows of each classifier."""
    record, folder = _copy_shipped("derm-cls__didgen__derm-mini__mini__s0__*.json", tmp_path / "genuine")
    genuine = folder / "genuine.json"
    reseal(genuine, record)
    verdict = one(tmp_path, genuine)
    assert verdict.accepted, verdict.reason

    forged = json.loads(json.dumps(record))
    forged["metrics"]["f1_weighted"] += 0.05
    path = folder / "f1.json"
    reseal(path, forged)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and verdict.reason.startswith("metrics.f1_weighted is ")
    assert "per-sample predictions give" in verdict.reason

    forged = json.loads(json.dumps(record))
    model = next(iter(forged["per_model"]))
    forged["per_model"][model]["balanced_accuracy"] = 0.9
    reseal(path, forged)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and verdict.reason.startswith(f"per_model.{model}.balanced_accuracy is 0.9")

    forged = json.loads(json.dumps(record))
    forged["comparisons"]["relative_gain"]["f1_weighted"] = 0.25
    reseal(path, forged)
    verdict = one(tmp_path, path)
    assert not verdict.accepted and verdict.reason.startswith("comparisons.relative_gain.f1_weighted is 0.25")


def test_skin_tone_annotation_metrics_recompute_from_the_annotations(tmp_path):
    """skin-tone has no models: its headline confusion-matrix metrics follow from the whole label/pred file."""
    work = tmp_path / "runs"
    record, path = run_one(RunConfig(task="skin-tone", method="ita-ycbcr", profile="smoke", work_dir=work, seed=0,
                                     threads=1, progress=False))
    assert one(tmp_path, path, allow_profiles=("smoke", "mini", "paper")).accepted
    record = json.loads(path.read_text())
    record["metrics"]["f1_macro"] = min(1.0, record["metrics"]["f1_macro"] + 0.02)
    forged = path.parent / "forged.json"
    reseal(forged, record)
    verdict = one(tmp_path, forged, allow_profiles=("smoke", "mini", "paper"))
    assert not verdict.accepted and verdict.reason.startswith("metrics.f1_macro is ")


def test_derm_quality_scores_recompute_from_pair_rows_and_feature_statistics(tmp_path):
    """derm-quality: MS-SSIM and LPIPS diversity are means of their per-pair rows; FD follows from the stored
    feature statistics of both sets."""
    work = tmp_path / "runs"
    _, path = run_one(RunConfig(task="derm-quality", method="real-only", profile="smoke", work_dir=work, seed=0,
                                threads=1, progress=False))
    profiles = ("smoke", "mini", "paper")
    verdict = one(tmp_path, path, allow_profiles=profiles)
    assert verdict.accepted and "not recomputable" not in verdict.reason, verdict.reason
    genuine = json.loads(path.read_text())
    keys = {k: k for k in genuine["metrics"]}
    fd_key = next(k for k in keys if k.startswith("fd["))
    ms_key = next(k for k in keys if k.startswith("ms_ssim"))
    lp_key = next(k for k in keys if k.startswith("lpips"))
    for key, reason in ((fd_key, "its feature statistics give"), (ms_key, "per-pair scores average"),
                        (lp_key, "per-pair scores average")):
        forged = json.loads(json.dumps(genuine))
        forged["metrics"][key] *= 0.9
        target = path.parent / f"forged-{key[:2]}.json"
        reseal(target, forged)
        verdict = one(tmp_path, target, allow_profiles=profiles)
        assert not verdict.accepted and verdict.reason.startswith(f"metrics.{key} is ") and reason in verdict.reason


def test_transfer_set_scores_recompute_from_their_rows(tmp_path, smoke_run):
    """seg-aug: dice[ph2] / iou[ph2] (Table 4.6) follow from the per-sample rows of the transfer split."""
    record, path = smoke_run
    rows = (path.parent / record["per_sample_file"]).read_text().splitlines()
    assert rows[0].split(",")[:4] == ["model", "arm", "split", "id"] and any(",ph2," in r for r in rows)
    verdict = one(tmp_path, path, allow_profiles=("smoke", "mini", "paper"))
    assert verdict.accepted and "dice[ph2]" not in verdict.reason, verdict.reason
    forged = {k: v for k, v in json.loads(path.read_text()).items() if k != "provenance"}
    forged["metrics"]["dice[ph2]"] = 0.99
    copy_named(record, path.parent, tmp_path)
    target = tmp_path / "r.json"
    reseal(target, forged)
    verdict = one(tmp_path, target, allow_profiles=("smoke", "mini", "paper"))
    assert not verdict.accepted and verdict.reason.startswith("metrics.dice[ph2] is 0.99, the mean of its per-model")

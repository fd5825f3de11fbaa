"""skin-tone end to end (smoke profile): derm-mini's ground truth and balanced test world, the Fitzpatrick17k /
DDI layouts with the CNN / ensemble annotators, shared base models, the record in Table 5.1, and user errors."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from bench.data.skintone import SKIN_GROUPS
from bench.interface import RunContext
from bench.metrics.contrast import fitzpatrick_group, ita_to_fitzpatrick
from bench.runner import BenchError, RunConfig, recompute_protocol_hash, run_one
from bench.tables.cli import table_command
from bench.tasks.skintone import SkinToneConfig, SkinToneTask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import data_layouts as L  # noqa: E402  (tests/data's layout builders)


def _run(tmp_path, method, *sets, **kw):
    return run_one(RunConfig(task="skin-tone", method=method, profile="smoke", sets=list(sets), work_dir=tmp_path / "w",
                             progress=False, **kw))


def test_derm_mini_truth_is_the_skin_ita_group_and_the_test_world_is_balanced():
    task = SkinToneTask(SkinToneConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 30, "val": 10}},
                                       test_dataset="derm-mini", test_options={"world_seed": 7, "sizes": {"test": 120}},
                                       test_per_group=5, image_size=32, label_from="ita_skin"))
    data = task.load(RunContext())
    fit = task.fit_set(data)
    assert len(fit) == 40 and Counter(s.meta["split"] for s in fit) == {"train": 30, "val": 10}
    for s in fit:
        assert SKIN_GROUPS[s.label] == fitzpatrick_group(ita_to_fitzpatrick(s.meta["ita_skin"]))
    test = data.splits["test"]
    assert Counter(data.extra["test_labels"]) == {0: 5, 1: 5, 2: 5}
    assert all(s.meta["id"].startswith("dm-7-test-") for s in test)  # the other world
    conds = task.conditions(data, RunContext())
    assert [c.meta["id"] for c in conds] == [s.meta["id"] for s in test] and conds[0].reference.shape == (3, 32, 32)
    assert "other_fit_splits" in task.fit_identity() and task.fit_identity()["other_fit_splits"]["val"]


def test_ita_run_scores_the_balanced_twin_and_keeps_its_protocol(tmp_path):
    record, path = _run(tmp_path, "ita-ycbcr")
    assert record["dataset"]["id"] == "derm-mini" and record["n"] == {"fit_train": 48, "fit_val": 16, "test": 24}
    cm = record["comparisons"]["confusion_matrix"]["counts"]
    assert [sum(row) for row in cm] == [8, 8, 8] and record["comparisons"]["support"] == {g: 8 for g in SKIN_GROUPS}
    scores = pd.read_csv(path.parent / record["per_sample_file"])
    assert list(scores.columns[:3]) == ["id", "label", "pred"] and "ita" in scores.columns
    assert record["metrics"]["accuracy"] == pytest.approx(float((scores["label"] == scores["pred"]).mean()))
    for key in ("precision_macro", "recall_macro", "f1_macro", "f1[V-VI]", "balanced_accuracy"):
        assert 0 <= record["metrics"][key] <= 1 and record["metric_info"][key]["higher_is_better"]
    assert recompute_protocol_hash(record) == record["protocol_hash"]  # the test split comes from test_dataset

    # `bench run --task skin-tone --method ensemble-lr --profile smoke` fills its row of Table 5.1 (smoke profile).
    ens, _ = _run(tmp_path, "ensemble-lr")
    app = typer.Typer()
    app.command("table")(table_command)
    app.command("other")(lambda: None)
    out = CliRunner().invoke(app, ["table", "thesis-5.1", "--profile", "smoke", "--records", str(path.parent)])
    assert out.exit_code == 0, out.output
    rows = {line.split("|")[1].strip(): line for line in out.output.splitlines() if line.startswith("| ")}
    for label, rec in (("Logistic Regression", ens), ("ITA w/ YCbCr", record)):
        cells = [c.strip() for c in rows[label].split("|")[1:-1]]
        assert cells[2] == f"{rec['metrics']['precision_macro']:.3f} (n=1)"
        assert cells[5] == f"{rec['metrics']['recall_macro']:.3f} (n=1)" and cells[8] == f"{rec['metrics']['f1_macro']:.3f} (n=1)"
    assert "no run" in rows["SVM"]


def _real_layouts(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    L.fitzpatrick17k(root, n=30, unknown=True, missing=False)
    L.ddi(root, n=9)
    config = tmp_path / "real.yaml"
    config.write_text("task:\n  dataset: fitzpatrick17k\n  dataset_options: {}\n  test_dataset: ddi\n  test_options: {}\n"
                      "  test_per_group: null\n  label_from: label\n  image_size: 32\n")
    return root, config


def test_cnn_and_ensembles_on_the_real_layouts_share_base_models(tmp_path):
    root, config = _real_layouts(tmp_path)
    rec, _ = _run(tmp_path, "ensemble-lr", data_root=root, config_file=config)
    assert rec["dataset"]["id"] == "ddi" and rec["n"] == {"fit_train": 24, "fit_val": 6, "test": 9}
    assert rec["config"]["method"]["members"] == ["vgg16", "mobilenet-v2", "vit-b16"]
    state = tmp_path / "w" / rec["stages"]["fit"] / "state"
    from safetensors.numpy import load_file

    assert load_file(str(state / "combiner_data.safetensors"))["features"].shape == (6, 9)
    models = tmp_path / "w" / "cache" / "skintone-models"
    assert len(list(models.iterdir())) == 3
    vgg, _ = _run(tmp_path, "vgg16", data_root=root, config_file=config)
    gb, _ = _run(tmp_path, "ensemble-gb", data_root=root, config_file=config)
    assert len(list(models.iterdir())) == 3  # the base models were trained once, for ensemble-lr
    for record in (vgg, gb):
        assert sum(map(sum, record["comparisons"]["confusion_matrix"]["counts"])) == 9



def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(BenchError, match="has [0-9]+ images of group .*test_per_group=500 needs more"):
        _run(tmp_path, "ita-8patch", "task.test_per_group=500")
    with pytest.raises(BenchError, match="are not the skin-tone groups"):
        _run(tmp_path, "ita-8patch", "task.label_from=label")
    with pytest.raises(BenchError, match="cannot run method 'classic-aug'"):
        _run(tmp_path, "classic-aug")
    with pytest.raises(BenchError, match="cannot run method 'real-only': task scores only what the method returns"):
        _run(tmp_path, "real-only")  # refused before any work, and `bench list` shows it as incompatible
    with pytest.raises(BenchError, match="fit_splits"):
        _run(tmp_path, "ita-8patch", "task.fit_splits=[val]")
    with pytest.raises(BenchError, match="members"):
        _run(tmp_path, "ensemble-lr", "method.members=[alexnet]")
    assert not (tmp_path / "w" / "records").exists()


def test_real_only_is_not_listed_as_compatible():
    from bench.runner import compatibility

    matrix = compatibility("mini")
    assert "returns nothing" in matrix["skin-tone"]["real-only"]
    assert matrix["skin-tone"]["vgg16"] is None and matrix["seg-aug"]["real-only"] is None

"""bench/analysis/report.py + cli.py: `bench analyze bias` on a real-only (pretrained) lowcontrast run; PH2 ITA difference."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.analysis.cli import analyze_app
from bench.analysis.report import AnalysisError, analyze_bias
from bench.runner import RunConfig, run_one
from bench.store import read_record


@pytest.fixture(scope="module")
def seg_real_only(tmp_path_factory):
    work = tmp_path_factory.mktemp("runs")
    record, path = run_one(RunConfig(task="lowcontrast", method="real-only", profile="smoke", work_dir=work, progress=False))
    return work, record, path


def test_bias_analysis_of_a_real_only_segmentation_run(seg_real_only) -> None:
    work, record, path = seg_real_only
    result = CliRunner().invoke(analyze_app, ["bias", "--run", record["run_id"], "--work-dir", str(work)])
    assert result.exit_code == 0, result.output
    assert "S_0.6" in result.output and "KS p=" in result.output
    updated = read_record(path)  # still schema-valid
    folder = path.parent
    for model in record["config"]["task"]["segmenters"]:
        png = folder / updated["artifacts"][f"bias-{model}"]
        assert Image.open(png).size[0] > 600
    stats = json.loads((folder / updated["artifacts"]["bias-stats"]).read_text())
    model = record["config"]["task"]["segmenters"][0]
    s = stats["models"][model]["subsets"]["S_0.8"]
    assert stats["arm"] == "real-only" and s["n"] + 0 <= record["n"]["test"]
    assert set(s["attributes"]) == {"ita_skin", "ita_lesion", "ita_difference", "area_ratio", "circularity", "skin_tone"}
    assert updated["comparisons"]["bias"]["models"][model]["S_0.8"]["n"] == s["n"]
    assert updated["metrics"] == record["metrics"]


def test_unknown_run_and_missing_scores_fail_with_one_line(seg_real_only, tmp_path) -> None:
    work, record, path = seg_real_only
    result = CliRunner().invoke(analyze_app, ["bias", "--run", "nope", "--work-dir", str(work)])
    assert result.exit_code == 2 and "no record 'nope'" in result.output
    bare = dict(read_record(path), per_sample_file=None, run_id="bare")
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    with pytest.raises(AnalysisError, match="no per-sample scores"):
        analyze_bias(tmp_path / "bare.json")


def test_ph2_per_image_ita_difference_distribution(shared_data, tmp_path) -> None:
    from bench.analysis.attributes import dataset_attributes
    from bench.analysis.bias import plot_distribution
    from bench.data.ph2 import PH2

    samples = PH2(root=shared_data / "dermoscopy", image_size=64).load("all")
    table = dataset_attributes(samples)
    diff = table["ita_difference"].to_numpy(float)
    assert len(diff) == 200 and np.isfinite(diff).all()
    # PH2 lesions are darker than the surrounding skin: the bulk of differences is positive
    assert np.median(diff) > 10 and (diff < 30).mean() < 0.9
    png = plot_distribution(diff, tmp_path / "ph2_ita_difference.png", "PH2: ITA skin - ITA lesion")
    assert Image.open(png).size[0] > 300


def test_skin_tone_groups_from_a_fitted_annotator_run(seg_real_only) -> None:
    """--skin-tone-run: the groups come from a skin-tone run's fitted annotator, loaded from its fit state."""
    import pandas as pd

    from bench.analysis.report import load_test_samples
    from bench.analysis.skin_tone import annotate, load_annotator

    work, record, path = seg_real_only
    st, _ = run_one(RunConfig(task="skin-tone", method="resnet18", profile="smoke", work_dir=work, progress=False))
    result = CliRunner().invoke(analyze_app, ["bias", "--run", record["run_id"], "--work-dir", str(work),
                                              "--skin-tone-run", st["run_id"]])
    assert result.exit_code == 0, result.output
    updated = read_record(path)
    stats = json.loads((path.parent / updated["artifacts"]["bias-stats"]).read_text())
    assert stats["skin_tone_source"] == st["run_id"]
    table = pd.read_csv(path.parent / updated["artifacts"]["attributes"])
    annotator, _ = load_annotator(st["run_id"], work)
    expected = annotate(load_test_samples(updated, None), annotator)
    assert list(table["skin_tone"]) == expected and set(expected) <= {"I-II", "III-IV", "V-VI"}
    wrong = CliRunner().invoke(analyze_app, ["bias", "--run", record["run_id"], "--work-dir", str(work),
                                             "--skin-tone-run", record["run_id"]])
    assert wrong.exit_code == 2 and "not a skin-tone run" in wrong.output

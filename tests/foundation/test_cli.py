"""``bench foundation``: commands exist, names are checked, eval reads the shipped weights."""
import json

from typer.testing import CliRunner

from bench.foundation.cli import app


def test_help_and_unknown_name():
    runner = CliRunner()
    assert runner.invoke(app, ["--help"]).exit_code == 0
    result = runner.invoke(app, ["eval", "mini-dalle"])
    assert result.exit_code != 0 and "unknown foundation model" in result.output


def test_training_summary_splits_stages(tmp_path):
    from bench.foundation.runs import training_summary

    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [{"step": 20, "elapsed_s": 60, "loss": 2.0},
                                                      {"step": 40, "elapsed_s": 120, "loss": 1.0},
                                                      {"step": 20, "elapsed_s": 30, "loss": 1.5}]))
    stages = training_summary(log)["stages"]
    assert [s["steps"] for s in stages] == [40, 20] and stages[0]["minutes"] == 2.0

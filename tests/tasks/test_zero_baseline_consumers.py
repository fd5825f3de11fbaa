"""A record whose real-only arm scores 0 (relative gain undefined, None) reads cleanly everywhere records are read:
the leaderboard site shows no gain ("—", never "nan %") and `bench results` aggregates it (issue 17)."""
import re

from typer.testing import CliRunner

from bench.cli import app
from bench.leaderboard.site import build_site
from bench.runner import RunConfig, run_one

# The smoke profile before issue 17 (2 epochs at lr 1e-3): on seed 1 the attention U-Net's real-only arm scores 0.
UNTRAINED = ["task.lr=1e-3", "task.max_epochs=2", "task.patience=2"]


def test_site_and_results_with_an_undefined_gain(tmp_path):
    record, _ = run_one(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", seed=1, sets=UNTRAINED,
                                  work_dir=tmp_path, threads=1, progress=False))
    assert 0.0 in [m["dice"] for m in record["comparisons"]["reference_per_model"].values()]
    assert record["comparisons"]["relative_gain"] == {"dice": None, "iou": None}

    build_site([tmp_path / "records"], tmp_path / "site", generated="2026-12-05T00:00:00Z")
    page = (tmp_path / "site" / "task-seg-aug.html").read_text()
    row = next(r for r in re.findall(r"<tr>.*?</tr>", page) if "classic-aug" in r)
    assert not re.search(r"\b(nan|inf)\b", row, re.IGNORECASE), row
    assert '<td data-value="">—</td>' in row

    out = CliRunner().invoke(app, ["results", "--records", str(tmp_path / "records")])
    assert out.exit_code == 0 and "classic-aug" in out.output, out.output

"""derm-cls and derm-quality check every split's files before fit, as seg-aug does (issue 17): a corrupt image in
the validation or test split of a real dataset is one error line naming it, exit 2, no fit started, no record."""
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from data_layouts import isic2018_task1, isic2018_task3  # noqa: E402


def _corrupt_first(folder: Path) -> Path:
    bad = sorted(folder.glob("*.jpg"))[0]
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    return bad


def _run(tmp_path: Path, task: str, dataset: str, *sets: str):
    work = tmp_path / "work"
    args = ["run", "--task", task, "--method", "real-only", "--profile", "smoke", "--dataset", dataset,
            "--data-root", str(tmp_path / "data"), "--work-dir", str(work), "--threads", "1", "--no-progress",
            "--quiet"]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert not (work / "fit").exists() and not list(work.glob("**/records/*.json"))
    return lines[0]


@pytest.mark.parametrize("split", ["Validation", "Test"])
def test_derm_cls_corrupt_image_outside_train_stops_before_fit(tmp_path, split):
    folder = isic2018_task3(tmp_path / "data")
    bad = _corrupt_first(folder / f"ISIC2018_Task3_{split}_Input")
    line = _run(tmp_path, "derm-cls", "isic2018-task3", "task.transfer_dataset=null")
    assert line.startswith(f"error: {bad}: unreadable image"), line


def test_derm_quality_corrupt_test_image_stops_before_fit(tmp_path):
    folder = isic2018_task1(tmp_path / "data", {"Training": 3, "Validation": 2, "Test": 2})
    bad = _corrupt_first(folder / "ISIC2018_Task1-2_Test_Input")
    line = _run(tmp_path, "derm-quality", "isic2018-task1")
    assert line.startswith(f"error: {bad}: unreadable image"), line

"""Bad data in any split (not only train) stops a run before fit, with one error line and no record (issue 17)."""
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from data_layouts import isic2018_task1, mask  # noqa: E402


def _folder(root: Path) -> Path:
    return isic2018_task1(root, {"Training": 4, "Validation": 2, "Test": 2})


def _mask_of(folder: Path, split: str) -> Path:
    return sorted((folder / f"ISIC2018_Task1_{split}_GroundTruth").glob("*.png"))[0]


def _spoil_size(folder, split):
    mask(_mask_of(folder, split), size=(20, 16))


def _spoil_values(folder, split):
    _grey(_mask_of(folder, split))


def _grey(path: Path) -> None:
    import numpy as np
    from PIL import Image

    array = np.zeros((10, 12), dtype=np.uint8)
    array[2:5, 2:6], array[5:7, 2:6] = 255, 128
    Image.fromarray(array, "L").save(path)


def _remove(folder, split):
    _mask_of(folder, split).unlink()


@pytest.mark.parametrize("split", ["Test", "Validation"])
@pytest.mark.parametrize("spoil, says", [(_spoil_size, "size mismatch: mask 20x16, image 12x10"),
                                         (_spoil_values, "non-binary mask: values [0, 128, 255]"),
                                         (_remove, "have no mask")])
def test_bad_mask_outside_train_stops_before_fit(tmp_path, split, spoil, says):
    folder = _folder(tmp_path / "data")
    spoil(folder, split)
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["run", "--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke",
                                      "--dataset", "isic2018-task1", "--data-root", str(tmp_path / "data"),
                                      "--work-dir", str(work), "--threads", "1", "--no-progress", "--quiet",
                                      "--set", "task.transfer_dataset=null", "--set", "task.max_epochs=1"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and says in lines[0]
    assert not (work / "fit").exists() and not list(work.glob("**/records/*.json"))

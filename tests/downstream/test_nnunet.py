"""bench.downstream.nnunet: nnU-Net v2 as seg-aug's paper-profile ``nnu-net`` (MedDiff-FT A.9, issue 21)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.nnunet import (DATASET_NAME, NnUNetConfig, export_dataset, nnunet_environment,
                                     require_nnunetv2, train_and_predict)
from bench.errors import UserInputError


def _pairs(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """n RGB images (3, size, size) in [0, 1] of a dark disc on light skin, and the disc masks."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for _ in range(n):
        cy, cx = torch.randint(size // 3, 2 * size // 3, (2,), generator=g).tolist()
        r = int(torch.randint(size // 8, size // 4, (1,), generator=g))
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img = 0.7 + 0.1 * torch.rand(3, size, size, generator=g)
        img[:, m] = torch.tensor([0.4, 0.25, 0.2])[:, None] + 0.05 * torch.rand(3, int(m.sum()), generator=g)
        images.append(img)
        masks.append(m)
    return torch.stack(images), torch.stack(masks)


def test_export_is_a_raw_dataset_nnunet_accepts(tmp_path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from PIL import Image

    x, y = _pairs(3, 0)
    vx, vy = _pairs(2, 1)
    tx, _ = _pairs(2, 2)
    before = os.environ.get("nnUNet_raw")
    with nnunet_environment(tmp_path) as roots:
        assert os.environ["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
        cases = export_dataset(roots["nnUNet_raw"], x, y, vx, vy, {"test": tx})
        folder = roots["nnUNet_raw"] / DATASET_NAME
        verify_dataset_integrity(str(folder), num_processes=1)  # nnunetv2's own check (asserts on any problem)
    assert os.environ.get("nnUNet_raw") == before  # restored
    spec = json.loads((folder / "dataset.json").read_text())
    assert spec["channel_names"] == {"0": "R", "1": "G", "2": "B"} and spec["file_ending"] == ".png"
    assert spec["labels"] == {"background": 0, "lesion": 1} and spec["numTraining"] == 5
    assert cases["train"] == [f"train_{k:05d}" for k in range(3)] and cases["val"] == ["val_00000", "val_00001"]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["test_00000_0000.png", "test_00001_0000.png"]
    image = Image.open(folder / "imagesTr" / "train_00001_0000.png")
    label = Image.open(folder / "labelsTr" / "train_00001.png")
    assert image.mode == "RGB" and image.size == (32, 32) and label.mode == "L"
    assert torch.equal(torch.from_numpy(np.array(label)).bool(), y[1])
    assert set(np.unique(np.array(label)).tolist()) == {0, 1}


def test_missing_nnunetv2_is_one_error_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nnunetv2", None)  # import nnunetv2 -> ImportError
    with pytest.raises(UserInputError, match=r"pip install 'medsynth-bench\[nnunet\]'") as err:
        require_nnunetv2()
    assert "\n" not in str(err.value)


def test_nnu_net_is_nnunetv2_in_the_paper_profile_and_the_dynunet_twin_in_mini() -> None:
    from bench.runner import RunConfig, resolve

    paper = resolve(RunConfig(task="seg-aug", method="real-only", profile="paper")).task_config
    mini = resolve(RunConfig(task="seg-aug", method="real-only", profile="mini")).task_config
    assert paper.nnunet == "nnunetv2" and paper.segmenter_id("nnu-net") == "nnunetv2"
    assert mini.nnunet == "dynunet" and mini.segmenter_id("nnu-net") == "nnu-net"
    assert paper.segmenter_id("upernet") == "upernet"
    assert getattr(SEGMENTERS.get("nnunetv2"), "trains_itself", False)
    with pytest.raises(TypeError, match="not an nn.Module factory"):
        SEGMENTERS.get("nnunetv2")(in_channels=3, base=8, depth=2)
    from bench.config import ConfigError
    from bench.tasks.lowcontrast import LowContrastConfig

    with pytest.raises(ConfigError, match="nnunetv2 runs in seg-aug only"):
        LowContrastConfig(segmenters=("nnunetv2",)).validate()


def test_unknown_trainer_is_one_error_line() -> None:
    from bench.downstream.nnunet import check_trainer

    check_trainer("nnUNetTrainer_5epochs")
    with pytest.raises(UserInputError, match="task.nnunet_trainer=nnUNetTrainerNope: nnunetv2 has no trainer"):
        check_trainer("nnUNetTrainerNope")


@pytest.mark.slow
def test_tiny_nnunet_trains_and_predicts_masks_the_task_scores(tmp_path) -> None:
    """8 train / 4 val / 4 test pairs at 32 px, one epoch of 2 iterations on the CPU (about 70 s at one thread, most
    of it nnU-Net's spawned worker pools for fingerprinting and preprocessing)."""
    from bench.interface import RunContext
    from bench.metrics.segmentation import dice_iou
    from bench.tasks.derm_seg import SegAugConfig, SegAugTask

    x, y = _pairs(8, 0)
    vx, vy = _pairs(4, 1)
    tx, ty = _pairs(4, 2)
    folder = tmp_path / "arm.nnunet"
    config = NnUNetConfig(epochs=1, iterations_per_epoch=2)
    result = train_and_predict(x, y, vx, vy, {"test": tx, "val": vx}, folder, config, torch.device("cpu"), seed=0)
    for name, n in (("test", 4), ("val", 4)):
        assert result.predictions[name].shape == (n, 32, 32) and result.predictions[name].dtype == torch.bool
    assert result.epochs == 1 and result.best_epoch == 0
    trained = folder / "nnUNet_results" / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__2d"
    assert (trained / "fold_0" / "checkpoint_final.pth").is_file() and (trained / "fold_0" / "checkpoint_best.pth").is_file()
    split = json.loads((folder / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json").read_text())
    assert split == [{"train": [f"train_{k:05d}" for k in range(8)], "val": [f"val_{k:05d}" for k in range(4)]}]
    plans = json.loads((trained / "plans.json").read_text())
    assert plans["configurations"]["2d"]["patch_size"] == [32, 32]

    # seg-aug's arm with nnu-net = nnunetv2 reads the same folder (beside its checkpoint): the finished training is
    # reused, the test images are predicted again and scored as any segmenter's
    task = SegAugTask(SegAugConfig(segmenters=("nnu-net",), nnunet="nnunetv2", nnunet_epochs=1, nnunet_iterations=2,
                                   image_size=32, seg_depth=2))
    arm = task._run_arm(0, "nnu-net", x, y, (vx, vy), {"test": (tx, ty, None)}, RunContext(work_dir=tmp_path),
                        "real-only", checkpoint=tmp_path / "arm.pt")
    dice, iou = dice_iou(result.predictions["test"], ty)
    assert arm["dice"] == pytest.approx(dice.tolist()) and arm["iou"] == pytest.approx(iou.tolist())
    assert arm["epochs"] == 1 and arm["best_val_dice"] == pytest.approx(
        float(dice_iou(result.predictions["val"], vy)[0].mean()))

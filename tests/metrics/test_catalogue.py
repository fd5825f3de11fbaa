import math
import subprocess
import sys

import pytest

from bench.metrics import METRIC_INFO, check_value, metric_info

TASK_KEYS = [
    "dice", "iou", "dice[S_0.6]", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro", "f1[MEL]",
    "accuracy", "balanced_accuracy", "auroc", "auroc[Cardiomegaly]", "fd[inception-v3]", "fd[mini-clip]",
    "kid[dinov2-base]", "ms_ssim", "ssim[range=1]", "ssim[range=255]", "psnr", "lpips_diversity",
    "lpips_diversity[masks]", "lpips", "bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chexpert_f1_macro",
    "chexpert_f1_micro", "chexpert_f1_micro5", "clip_i", "clip_t", "dino", "clip_i_sync", "clip_i[mini-clip]",
    "clip_i[masked]", "dino[masked]", "ita_difference", "p_value[dice]",
]


@pytest.mark.parametrize("key", TASK_KEYS)
def test_every_task_key_is_catalogued(key):
    info = METRIC_INFO[key]
    assert key in METRIC_INFO and info.name == key and info.display_name and info.description
    assert METRIC_INFO.get(key) == info


def test_bracket_lookup_and_directions():
    assert metric_info("fd[dinov2-base]").higher_is_better is False
    assert metric_info("fd[dinov2-base]").display_name == "FD [dinov2-base]"
    assert metric_info("ssim[range=255]").display_name == "SSIM (range 255)"  # exact entry wins over ssim[*]
    assert metric_info("clip_i_sync[mini-clip]").higher_is_better is False  # the longer pattern wins over clip_i[*]
    assert "fd" not in METRIC_INFO and "fd[]" not in METRIC_INFO and "fid" not in METRIC_INFO
    with pytest.raises(KeyError, match="Did you mean"):
        METRIC_INFO["dicee"]


def test_check_value():
    assert check_value("dice", 0.8) is None
    assert "outside" in check_value("dice", 1.2)
    assert "outside" in check_value("fd[mini-clip]", -1.0)
    assert check_value("kid[x]", -0.001) is None
    assert check_value("psnr", math.inf) is None
    assert check_value("dice", None) is None
    assert "unknown" in check_value("nope", 1.0)
    assert "outside" in check_value("dice", math.nan)


def test_metric_classes_agree_with_catalogue():
    from bench.metrics.classification import ClassificationMetrics
    from bench.metrics.image import FrechetDistance, KernelDistance
    from bench.metrics.segmentation import DiceIoU

    pairs = [(DiceIoU, "dice"), (ClassificationMetrics, "f1_weighted"), (FrechetDistance, "fd[x]"), (KernelDistance, "kid[x]")]
    for cls, key in pairs:
        info = METRIC_INFO[key]
        assert cls.higher_is_better == info.higher_is_better, cls
        assert (cls.lower_bound, cls.upper_bound) == (info.lower, info.upper), cls
        assert cls.display_name


def test_catalogue_import_is_light():
    code = "import sys, bench.metrics; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]

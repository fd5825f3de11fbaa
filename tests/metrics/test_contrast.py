import math

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from bench.metrics.contrast import (
    fitzpatrick_group,
    is_low_contrast,
    ita_contrast,
    ita_from_lab,
    ita_region,
    ita_to_fitzpatrick,
)


def uniform(lab_value, size=8):
    rgb = lab2rgb(np.array(lab_value, dtype=np.float64).reshape(1, 1, 3))
    return np.repeat(np.repeat(rgb, size, 0), size, 1)


def test_ita_hand_computed_on_uniform_colour():
    img = uniform([70.0, 10.0, 20.0])
    lab = rgb2lab(img)[0, 0]  # the exact round-tripped colour
    expected = math.degrees(math.atan((lab[0] - 50) / lab[2]))
    assert ita_region(img, np.ones((8, 8), bool)) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(45.0, abs=0.05)  # (70-50)/20 = 1 -> 45 degrees


def test_lesion_skin_difference_and_tensor_input():
    skin, lesion = uniform([75.0, 8.0, 18.0], 16), uniform([40.0, 15.0, 25.0], 16)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    img = np.where(mask[..., None], lesion, skin)
    out = ita_contrast(torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(mask))
    lab_s, lab_l = rgb2lab(skin)[0, 0], rgb2lab(lesion)[0, 0]
    assert out["ita_skin"] == pytest.approx(math.degrees(math.atan((lab_s[0] - 50) / lab_s[2])), abs=1e-9)
    assert out["ita_lesion"] == pytest.approx(math.degrees(math.atan((lab_l[0] - 50) / lab_l[2])), abs=1e-9)
    assert out["ita_difference"] == pytest.approx(out["ita_skin"] - out["ita_lesion"])
    assert not is_low_contrast(out["ita_difference"])


def test_aggregation_options_differ_on_mixed_region():
    img = np.concatenate([uniform([80.0, 5.0, 10.0], 4), uniform([40.0, 5.0, 15.0], 4)], axis=0)
    region = np.ones((8, 4), bool)
    lab = rgb2lab(img).reshape(-1, 3)
    assert ita_region(img, region, "region_mean") == pytest.approx(float(ita_from_lab(lab[:, 0].mean(), lab[:, 2].mean())))
    assert ita_region(img, region, "pixel_mean") == pytest.approx(float(np.mean(ita_from_lab(lab[:, 0], lab[:, 2]))))
    assert ita_region(img, region, "region_mean") != pytest.approx(ita_region(img, region, "pixel_mean"), abs=1e-3)
    with pytest.raises(ValueError):
        ita_region(img, region, "median")


def test_edge_cases():
    img = uniform([60.0, 0.0, 10.0])
    with pytest.raises(ValueError, match="empty"):
        ita_region(img, np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ita_region(img * 255, np.ones((8, 8), bool))
    assert ita_from_lab(60.0, 0.0) == pytest.approx(90.0)
    assert is_low_contrast(29.99) and not is_low_contrast(30.0)


@pytest.mark.parametrize("ita,fst", [(60, 1), (55, 2), (41.01, 2), (41, 3), (28, 4), (19, 5), (10.5, 5), (10, 6), (-30, 6)])
def test_fitzpatrick_thresholds(ita, fst):
    assert ita_to_fitzpatrick(ita) == fst


def test_fitzpatrick_groups():
    assert [fitzpatrick_group(f) for f in range(1, 7)] == ["I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI"]
    with pytest.raises(ValueError):
        fitzpatrick_group(0)


def test_tracks_derm_mini_ground_truth():
    from bench.data import derm_mini as derm
    samples = derm.DermMini().load("train")
    measured, truth = [], []
    for i in range(16):
        s = samples[i]
        measured.append(ita_contrast(s.image, s.mask)["ita_difference"])
        truth.append(s.meta["ita_diff"])
    # hair, vignetting, texture and soft borders perturb the rendered colours, so compare by correlation
    assert np.corrcoef(measured, truth)[0, 1] > 0.8


def test_angle_options_agree_for_positive_b_and_differ_for_negative_b():
    # Hand-computed: (L*, b*) = (70, 20): (70 - 50) / 20 = 1 -> 45 degrees either way.
    assert ita_from_lab(70.0, 20.0, "arctan") == pytest.approx(45.0)
    assert ita_from_lab(70.0, 20.0, "atan2") == pytest.approx(45.0)
    # (70, -20): arctan(-1) = -45, atan2(20, -20) = 135; (30, -20): arctan(1) = 45, atan2(-20, -20) = -135.
    assert ita_from_lab(70.0, -20.0, "arctan") == pytest.approx(-45.0)
    assert ita_from_lab(70.0, -20.0, "atan2") == pytest.approx(135.0)
    assert ita_from_lab(30.0, -20.0, "arctan") == pytest.approx(45.0)
    assert ita_from_lab(30.0, -20.0, "atan2") == pytest.approx(-135.0)
    with pytest.raises(ValueError, match="angle"):
        ita_from_lab(70.0, 20.0, "atan")
    # The option reaches the region and contrast functions: a bluish region (b* < 0) flips, skin (b* > 0) does not.
    blue, skin = uniform([70.0, 0.0, -20.0], 8), uniform([70.0, 10.0, 20.0], 8)
    lab_blue = rgb2lab(blue)[0, 0]
    assert lab_blue[2] < 0
    region = np.ones((8, 8), bool)
    assert ita_region(blue, region, angle="arctan") == pytest.approx(ita_region(blue, region, angle="atan2") - 180.0)
    assert ita_region(skin, region, angle="arctan") == pytest.approx(ita_region(skin, region, angle="atan2"))
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    img = np.where(mask[..., None], blue, skin)
    a, b = ita_contrast(img, mask, angle="arctan"), ita_contrast(img, mask, angle="atan2")
    assert a["ita_skin"] == pytest.approx(b["ita_skin"])
    assert a["ita_lesion"] == pytest.approx(b["ita_lesion"] - 180.0)


def test_angle_option_reaches_lowcontrast_selection_and_bias_attributes():
    from bench.analysis.attributes import image_attributes
    from bench.interface import Sample
    from bench.tasks.lowcontrast import LowContrastConfig, select_low_contrast

    assert LowContrastConfig().ita_angle == "arctan"
    # Lesion bluish (b* < 0, L* > 50): arctan gives about -45, atan2 about 135 -> the difference flips sign.
    skin, blue = uniform([70.0, 10.0, 20.0], 8), uniform([70.0, 0.0, -20.0], 8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    img = np.where(mask[..., None], blue, skin)
    sample = Sample(image=torch.from_numpy(img).permute(2, 0, 1).float(), mask=torch.from_numpy(mask))
    chosen_arctan, (d_arctan,) = select_low_contrast([sample], 30.0, angle="arctan")
    chosen_atan2, (d_atan2,) = select_low_contrast([sample], 30.0, angle="atan2")
    assert d_arctan > 30 and chosen_arctan == [] and d_atan2 < -30 and chosen_atan2 == [0]
    assert image_attributes(img, mask, angle="atan2")["ita_difference"] == pytest.approx(d_atan2, abs=1e-4)

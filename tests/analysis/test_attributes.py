"""bench/analysis/attributes.py: ITA attributes from hand-computed CIELAB, circularity, area, skin-tone group."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.color import lab2rgb

from bench.analysis.attributes import circularity, dataset_attributes, image_attributes
from bench.interface import Sample


def two_region_image(skin_lab, lesion_lab, size=32, radius=8):
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2
    lab = np.where(mask[..., None], np.array(lesion_lab, float), np.array(skin_lab, float))
    return lab2rgb(lab), mask


def test_ita_attributes_match_hand_computed_lab() -> None:
    # skin L*=70, b*=20: ITA = atan(20/20) = 45 deg; lesion L*=40, b*=20: atan(-10/20) = -26.565 deg
    image, mask = two_region_image((70, 10, 20), (40, 12, 20))
    a = image_attributes(image, mask)
    assert a["ita_skin"] == pytest.approx(45.0, abs=0.05)
    assert a["ita_lesion"] == pytest.approx(math.degrees(math.atan(-0.5)), abs=0.05)
    assert a["ita_difference"] == pytest.approx(45.0 - math.degrees(math.atan(-0.5)), abs=0.1)
    assert a["fitzpatrick"] == 2 and a["skin_tone"] == "I-II"  # 55 >= 45 > 41
    assert a["area_ratio"] == pytest.approx(mask.mean())


def test_swapping_lesion_and_skin_colours_negates_the_difference() -> None:
    image, mask = two_region_image((70, 10, 20), (40, 12, 20))
    swapped, _ = two_region_image((40, 12, 20), (70, 10, 20))
    assert image_attributes(swapped, mask)["ita_difference"] == pytest.approx(-image_attributes(image, mask)["ita_difference"], abs=1e-6)


def test_circularity_of_a_disc_is_near_one_and_lower_for_a_bar() -> None:
    yy, xx = np.mgrid[0:128, 0:128]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 < 40 ** 2
    bar = np.zeros((128, 128), bool)
    bar[60:68, 4:124] = True
    assert circularity(disc) == pytest.approx(1.0, abs=0.12)
    assert circularity(bar) < 0.4
    assert math.isnan(circularity(np.zeros((8, 8), bool)))


def test_dataset_attributes_marks_undefined_ita(caplog) -> None:
    image, mask = two_region_image((70, 10, 20), (40, 12, 20))
    good = Sample(image=torch.from_numpy(image).permute(2, 0, 1).float(), mask=torch.from_numpy(mask), meta={"id": "a"})
    empty = Sample(image=good.image, mask=torch.zeros_like(good.mask), meta={"id": "b"})
    table = dataset_attributes([good, empty])
    assert list(table["id"]) == ["a", "b"]
    assert np.isfinite(table.loc[0, "ita_difference"]) and np.isnan(table.loc[1, "ita_difference"])
    assert pd.isna(table.loc[1, "skin_tone"]) and "undefined" in caplog.text

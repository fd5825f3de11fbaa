"""bench/analysis/bias.py: S_x comparisons and plots on a world where failure follows low contrast."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from bench.analysis.bias import compare_subsets, plot_model


def synthetic_table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    diff = rng.uniform(-20, 80, n)
    table = pd.DataFrame({"id": [str(i) for i in range(n)], "ita_skin": rng.uniform(10, 60, n),
                          "ita_lesion": rng.uniform(-20, 40, n), "ita_difference": diff,
                          "area_ratio": rng.uniform(0.05, 0.4, n), "circularity": rng.uniform(0.5, 1.0, n),
                          "skin_tone": rng.choice(["I-II", "III-IV", "V-VI"], n)})
    iou = np.clip(0.35 + diff / 100 + rng.normal(0, 0.05, n), 0, 1)  # low contrast -> poor IoU
    return table, iou


def test_subsets_shift_to_low_ita_difference_but_not_in_skin_tone() -> None:
    table, iou = synthetic_table()
    out = compare_subsets(table, iou, (0.8, 0.6))
    s06 = out["subsets"]["S_0.6"]
    assert s06["n"] == int((iou < 0.6).sum()) > 10
    d = s06["attributes"]["ita_difference"]["vs_complement"]
    assert d["ks"]["p"] < 1e-6 and d["mannwhitney"]["rank_biserial"] < -0.5 and d["median"] < d["median_other"]
    assert s06["attributes"]["area_ratio"]["vs_complement"]["ks"]["p"] > 1e-3  # independent of IoU here
    assert s06["attributes"]["skin_tone"]["vs_complement"]["p"] > 1e-3
    assert out["subsets"]["S_0.8"]["n"] >= s06["n"]


def test_plot_model_writes_a_png(tmp_path) -> None:
    table, iou = synthetic_table(60)
    path = plot_model(table, iou, tmp_path / "b.png", "unet", (0.8, 0.6))
    assert Image.open(path).size[0] > 600

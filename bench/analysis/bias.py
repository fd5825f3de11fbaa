"""Chapter 5 bias analysis: attribute distributions of poorly segmented subsets vs the full test set.

For one segmenter with per-image IoU on the test set, S_x = {IoU < x} (thesis: S_0.8, S_0.6; HAM10000
also S_0.4). Each attribute of `bench.analysis.attributes` is compared between S_x and its complement
and between S_x and the full set (`bench.analysis.tests`), and plotted as histogram + KDE (Figs. 5.4/5.8).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.attributes import CATEGORICAL, CONTINUOUS, SKIN_TONE_GROUPS
from bench.analysis.tests import categorical_tests, continuous_tests

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.8, 0.6)
"""Poorly segmented subsets of the ISIC analysis (thesis 5.2); add 0.4 on HAM10000."""


def subset_name(x: float) -> str:
    """``S_0.8`` for 0.8: the key used in metrics (``iou[S_0.8]``) and in the analysis JSON."""
    return f"S_{x:g}"


def compare_subsets(table: Any, iou: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Tests of every attribute for every S_x of one model.

    Args:
        table: DataFrame of attributes, one row per test image (`dataset_attributes`).
        iou: per-image IoU of the model, aligned with ``table`` rows, shape (N,).
        thresholds: the x of each S_x (strict IoU < x).

    Returns:
        ``{"n": N, "subsets": {"S_0.8": {"n": |S|, "fraction", "attributes": {name: tests}}}}``.
    """
    from bench.metrics.segmentation import subset_below

    scores = np.asarray(iou, dtype=np.float64)
    if len(scores) != len(table):
        raise ValueError(f"{len(scores)} IoU values for {len(table)} images")
    out: dict[str, Any] = {"n": int(len(table)), "mean_iou": float(scores.mean()) if len(scores) else None, "subsets": {}}
    for x in thresholds:
        inside = np.zeros(len(table), dtype=bool)
        inside[subset_below(scores, x)] = True
        attrs: dict[str, Any] = {}
        for name in CONTINUOUS:
            values = table[name].to_numpy(dtype=np.float64)
            attrs[name] = {"vs_complement": continuous_tests(values[inside], values[~inside]),
                           "vs_full": continuous_tests(values[inside], values)}
        for name in CATEGORICAL:
            values = table[name].tolist()
            attrs[name] = categorical_tests([v for v, s in zip(values, inside) if s],
                                            [v for v, s in zip(values, inside) if not s], values, SKIN_TONE_GROUPS)
        out["subsets"][subset_name(x)] = {"threshold": float(x), "n": int(inside.sum()),
                                          "fraction": float(inside.mean()) if len(inside) else 0.0, "attributes": attrs}
    return out


def plot_model(table: Any, iou: Any, path: Path, title: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
               low_contrast_threshold: float = 30.0) -> Path:
    """One PNG per model: a panel per attribute, full set vs each S_x (density histogram + Gaussian KDE).

    The skin-tone panel shows group proportions as bars. The ITA-difference panel marks the
    low-contrast threshold (30 degrees). KDE is ``scipy.stats.gaussian_kde`` (Scott's bandwidth),
    drawn only where a subset has at least 3 distinct values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    scores = np.asarray(iou, dtype=np.float64)
    groups = [("all", np.ones(len(table), dtype=bool))] + [(subset_name(x), scores < x) for x in thresholds]
    colours = ["#4c72b0", "#dd8452", "#c44e52", "#8172b3"]
    panels = list(CONTINUOUS) + list(CATEGORICAL)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.0), squeeze=False)
    for ax, name in zip(axes[0], panels):
        if name in CATEGORICAL:
            width = 0.8 / len(groups)
            values = np.array(table[name].tolist(), dtype=object)
            for k, (label, sel) in enumerate(groups):
                vals = values[sel]
                n = max(sum(v in SKIN_TONE_GROUPS for v in vals), 1)
                props = [sum(v == c for v in vals) / n for c in SKIN_TONE_GROUPS]
                ax.bar(np.arange(len(SKIN_TONE_GROUPS)) + k * width, props, width, color=colours[k % len(colours)],
                       label=f"{label} (n={int(sel.sum())})")
            ax.set_xticks(np.arange(len(SKIN_TONE_GROUPS)) + width * (len(groups) - 1) / 2, SKIN_TONE_GROUPS)
            ax.set_ylabel("proportion")
        else:
            values = table[name].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            edges = np.histogram_bin_edges(finite, bins=20)
            grid = np.linspace(edges[0], edges[-1], 200)
            for k, (label, sel) in enumerate(groups):
                vals = values[sel & np.isfinite(values)]
                if vals.size == 0:
                    continue
                colour = colours[k % len(colours)]
                ax.hist(vals, bins=edges, density=True, alpha=0.25 if k else 0.35, color=colour,
                        label=f"{label} (n={vals.size})")
                if np.unique(vals).size >= 3:
                    ax.plot(grid, gaussian_kde(vals)(grid), color=colour, linewidth=1.4)
            if name == "ita_difference":
                ax.axvline(low_contrast_threshold, color="k", linestyle=":", linewidth=1)
            ax.set_ylabel("density")
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_distribution(values: Any, path: Path, title: str, xlabel: str = "ITA difference (deg)",
                      threshold: float | None = 30.0) -> Path:
    """Histogram + KDE of one attribute over a dataset (e.g. PH2's per-image ITA difference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    vals = _finite_values(values)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    edges = np.histogram_bin_edges(vals, bins=25)
    ax.hist(vals, bins=edges, density=True, alpha=0.4, label=f"n={vals.size}")
    if np.unique(vals).size >= 3:
        grid = np.linspace(edges[0], edges[-1], 200)
        ax.plot(grid, gaussian_kde(vals)(grid), linewidth=1.5)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle=":", linewidth=1, label=f"{threshold:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _finite_values(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("no finite values to plot")
    return arr

"""Clinical efficacy of generated chest X-rays: the 5-pathology AUROC protocol of chapter 6 (Table 6.2, spec 5.4).

For each pathology P of `PATHOLOGIES`, images generated from P-conditioned label vectors are positives and images
generated from "No Finding" vectors (the same set for every P) are negatives; a classifier's score for P ranks them
and ``sklearn.metrics.roc_auc_score`` gives ``auroc[P]``; ``auroc`` is the arithmetic mean of the five.

Classifiers:

* ``xrv`` (paper profile): torchxrayvision DenseNet-121 ``densenet121-res224-all`` from a local file
  (`bench.metrics.extractors.load_xrv_densenet`); its 18 outputs are read by name.
* ``cxr-mini-cnn`` (mini profile): `LabelCNN`, a small multi-label CNN trained here on the real training images of
  the task's dataset (14 CheXpert outputs, BCE). A plumbing-grade stand-in for XRV: no XRV weights exist offline.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Table 6.2's pathologies: display name -> CheXpert category (`bench.metrics.chexlabel.CATEGORIES`).
PATHOLOGIES: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Lung Opacity": "Lung Opacity",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
}
NEGATIVE = "No Finding"


def auroc_scores(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``auroc[P]`` per pathology and their mean ``auroc``.

    Args:
        scores: display name P -> (classifier scores for P on the P-conditioned images, scores for P on the
            No-Finding images).
    """
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    for name, (pos, neg) in scores.items():
        pos, neg = np.asarray(pos, float), np.asarray(neg, float)
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(f"AUROC[{name}] needs positive and negative images, got {len(pos)} and {len(neg)}")
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        out[f"auroc[{name}]"] = float(roc_auc_score(y, np.r_[pos, neg]))
    out["auroc"] = float(np.mean([out[f"auroc[{n}]"] for n in scores]))
    return out


def auroc_chance_test(scores: np.ndarray, names: Sequence[str], pathologies: Sequence[str] = tuple(PATHOLOGIES),
                      negative: str = NEGATIVE, n_permutations: int = 2000, seed: int = 0) -> dict[str, float]:
    """Are the generated images' labels recovered above chance? One-sided tests of the AUROC protocol.

    ``p[P]``: scipy's Mann-Whitney U test (the AUROC is U / (n_pos n_neg)) that P's scores rank the P-conditioned
    images above the No-Finding ones. ``p``: a permutation test of the mean ``auroc`` against the global null "the
    images do not depend on their condition": the condition names are shuffled over all the images (every image is
    exchangeable under that null, the shared No-Finding set included) and ``p = (1 + #{mean >= observed}) / (1 + n)``.

    Args:
        scores: (n_images, len(pathologies)) classifier scores, column k for ``pathologies[k]``.
        names: the condition of each image: a pathology or ``negative``.
    """
    from scipy.stats import mannwhitneyu

    scores, names = np.asarray(scores, float), np.asarray(names)
    if scores.shape != (len(names), len(pathologies)):
        raise ValueError(f"scores {scores.shape} for {len(names)} images x {len(pathologies)} pathologies")
    # beats[k][i, j]: image i ranks above image j on pathology k (ties count half), as roc_auc_score counts them
    beats = [(col[:, None] > col[None, :]) + 0.5 * (col[:, None] == col[None, :]) for col in scores.T]

    def mean_auroc(labels: np.ndarray) -> float:
        neg = labels == negative
        return float(np.mean([beats[k][np.ix_(labels == p, neg)].mean() for k, p in enumerate(pathologies)]))

    out: dict[str, float] = {}
    for k, p in enumerate(pathologies):
        pos, neg = scores[names == p, k], scores[names == negative, k]
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(f"AUROC[{p}] needs positive and negative images, got {len(pos)} and {len(neg)}")
        out[f"p[{p}]"] = float(mannwhitneyu(pos, neg, alternative="greater").pvalue)
    observed = mean_auroc(names)
    rng = np.random.default_rng(seed)
    null = np.array([mean_auroc(rng.permutation(names)) for _ in range(n_permutations)])
    out["auroc"] = observed
    out["null_mean"] = float(null.mean())
    out["null_q99"] = float(np.quantile(null, 0.99))
    out["p"] = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
    return out


class LabelCNN(nn.Module):
    """A small multi-label CNN on grey images (N, 1|3, H, W) in [0, 1] -> 14 logits (CheXpert order)."""

    def __init__(self, n_labels: int = 14, width: int = 32, size: int = 64) -> None:
        super().__init__()
        self.size = size
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_labels))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.float().mean(1, keepdim=True) if x.shape[1] != 1 else x.float()
        if grey.shape[-1] != self.size or grey.shape[-2] != self.size:
            grey = nn.functional.interpolate(grey, size=(self.size, self.size), mode="bilinear", antialias=True,
                                             align_corners=False)
        return grey * 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))


def train_label_cnn(images: torch.Tensor, labels: torch.Tensor, epochs: int = 8, batch_size: int = 64,
                    lr: float = 2e-3, seed: int = 0, size: int = 64) -> LabelCNN:
    """Fit `LabelCNN` on real images (N, C, H, W) in [0, 1] and binary labels (N, 14) with BCE (AdamW, flips off:
    laterality is part of some findings)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LabelCNN(labels.shape[1], size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(images[idx]), labels[idx].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


class PathologyScorer:
    """Scores of the five pathologies for images (N, C, H, W) in [0, 1]: ``score(images) -> {P: (N,) array}``."""

    def __init__(self, model: nn.Module, output_names: Sequence[str], name: str) -> None:
        self.model, self.output_names, self.name = model.eval(), list(output_names), name

    def score(self, images: torch.Tensor, batch_size: int = 64) -> dict[str, np.ndarray]:
        fn = getattr(self.model, "classify", self.model)
        outs = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                outs.append(fn(images[start:start + batch_size]).float().cpu())
        out = torch.cat(outs).numpy() if outs else np.zeros((0, len(self.output_names)))
        result = {}
        for display, category in PATHOLOGIES.items():
            key = display if display in self.output_names else category
            result[display] = out[:, self.output_names.index(key)]
        return result


def load_scorer(kind: str, train_images: torch.Tensor | None = None, train_labels: torch.Tensor | None = None,
                cache: Path | None = None, weights_dir: str | None = None, epochs: int = 8, seed: int = 0) -> PathologyScorer:
    """The classifier of the AUROC protocol: ``xrv`` (local torchxrayvision file) or ``cxr-mini-cnn`` (trained on the
    given real images, cached as safetensors at ``cache`` when given)."""
    if kind == "xrv":
        from bench.metrics.extractors import load_xrv_densenet

        model = load_xrv_densenet(weights_dir=weights_dir)
        return PathologyScorer(model, model.targets, "xrv-densenet121-res224-all")
    if kind != "cxr-mini-cnn":
        raise ValueError(f"unknown AUROC classifier '{kind}' (xrv, cxr-mini-cnn)")
    from bench.metrics.chexlabel import CATEGORIES

    size = int(train_images.shape[-1]) if train_images is not None else 64
    if cache is not None and cache.exists():
        from safetensors.torch import load_file

        state = load_file(str(cache))
        model = LabelCNN(len(CATEGORIES), size=int(state.pop("_size").item()))
        model.load_state_dict(state)
        return PathologyScorer(model.eval(), CATEGORIES, "cxr-mini-cnn")
    if train_images is None or train_labels is None:
        raise ValueError("cxr-mini-cnn needs the real training images and labels to fit on")
    model = train_label_cnn(train_images, train_labels, epochs=epochs, seed=seed, size=size)
    if cache is not None:
        from safetensors.torch import save_file

        from bench.store import atomic_path

        with atomic_path(cache) as tmp:
            save_file({**{k: v.contiguous() for k, v in model.state_dict().items()}, "_size": torch.tensor(size)},
                      str(tmp))
    return PathologyScorer(model, CATEGORIES, "cxr-mini-cnn")


def classifier_auroc_on(scorer: PathologyScorer, images: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Per-pathology AUROC of ``scorer`` on labelled real images (a sanity figure: how well it reads real data)."""
    from sklearn.metrics import roc_auc_score

    from bench.metrics.chexlabel import CATEGORIES

    scores = scorer.score(images)
    out: dict[str, Any] = {}
    for display, category in PATHOLOGIES.items():
        y = labels[:, CATEGORIES.index(category)]
        if 0 < y.sum() < len(y):
            out[display] = float(roc_auc_score(y, scores[display]))
    return out

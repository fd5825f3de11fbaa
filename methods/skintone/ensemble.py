"""The stacked ensembles of Table 5.1: a scikit-learn classifier over the base CNNs' outputs.

Thesis (research ch5 section 1.3): logistic regression over VGG-16, MobileNet-V2 and ViT-B-16; Table 5.1 also
lists Random Forest, SVM, Decision Tree, Extra Trees, AdaBoost and Gradient Boosting. [A] The features are the
members' concatenated softmax outputs (3 members x 3 groups = 9), the combiner is fitted on the fit set's
validation part (DDI is test only) with scikit-learn's default hyperparameters (logistic regression: up to 1000
iterations) and a ``random_state`` derived from the run seed. The members are the cached base models of
`methods.skintone.cnn` (trained once per configuration, data and seed, whichever annotator asks first).

The fitted state is the members' weights (hard links to the cache where possible) and the combiner's training
features and labels (safetensors); loading refits the combiner on them, so no pickled estimator is stored.
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.data.skintone import SKIN_GROUPS
from bench.interface import RunContext, derive_seed
from methods.skintone.cnn import BaseModel, load_base_model, fit_base_model, member_outputs, save_base_model
from methods.skintone.common import Annotator, prepare_fit_data

logger = logging.getLogger(__name__)

#: combiner id -> scikit-learn class and the defaults we set on it.
COMBINERS: dict[str, tuple[str, dict[str, Any]]] = {
    "lr": ("sklearn.linear_model:LogisticRegression", {"max_iter": 1000}),
    "rf": ("sklearn.ensemble:RandomForestClassifier", {}),
    "svm": ("sklearn.svm:SVC", {}),
    "dt": ("sklearn.tree:DecisionTreeClassifier", {}),
    "et": ("sklearn.ensemble:ExtraTreesClassifier", {}),
    "adaboost": ("sklearn.ensemble:AdaBoostClassifier", {}),
    "gb": ("sklearn.ensemble:GradientBoostingClassifier", {}),
}


def build_combiner(kind: str, options: dict[str, Any], seed: int) -> Any:
    """A scikit-learn classifier: COMBINERS' class and defaults, ``options`` on top, ``random_state=seed`` if unset."""
    target, defaults = COMBINERS[kind]
    module, name = target.split(":")
    cls = getattr(importlib.import_module(module), name)
    try:
        est = cls(**{**defaults, **options})
    except TypeError as exc:
        raise ValueError(f"method.combiner_options for {name}: {exc}") from None
    if "random_state" in est.get_params() and "random_state" not in options:
        est.set_params(random_state=seed)
    return est


def member_features(members: list[BaseModel], images: torch.Tensor, size: int, kind: str = "softmax") -> np.ndarray:
    """The combiner's features of images (N, 3, H, W): each member's softmax (or logits), concatenated (N, 3 * M)."""
    parts = []
    for m in members:
        out = member_outputs(m, images, size)
        parts.append(out.softmax(1) if kind == "softmax" else out)
    return torch.cat(parts, dim=1).double().numpy()


class Ensemble(Annotator):
    """Stacking of the base CNNs named by ``members``; ``combiner`` names the scikit-learn classifier."""

    combiner: ClassVar[str] = ""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.members: list[BaseModel] = []
        self.estimator: Any = None
        self._train: tuple[np.ndarray, np.ndarray] | None = None
        self._seed = 0

    def _fit_combiner(self) -> None:
        x, y = self._train
        self.estimator = build_combiner(self.combiner, dict(self.config.combiner_options), self._seed).fit(x, y)

    def fit(self, train: Any, ctx: RunContext) -> None:
        c = self.config
        data = prepare_fit_data(train, c.input_size, c.val_fraction, derive_seed(ctx.seed, 13))
        self.members = [fit_base_model(arch, data, c, ctx) for arch in c.members]
        self._train = (member_features(self.members, data.val_x, c.input_size, c.features), data.val_y.numpy())
        self._seed = int(derive_seed(ctx.seed, 17) % 2 ** 31)
        self._fit_combiner()
        acc = float((self.estimator.predict(self._train[0]) == self._train[1]).mean())
        logger.info("ensemble-%s: %d features from %s, fitted on %d validation images (accuracy there %.4f)",
                    self.combiner, self._train[0].shape[1], ", ".join(c.members), len(self._train[1]), acc)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        if self._train is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        for m in self.members:
            save_base_model(m, path / "members" / m.arch)
        save_file({"features": self._train[0], "labels": self._train[1].astype(np.int64)}, str(path / "combiner_data.safetensors"))
        (path / "combiner.json").write_text(json.dumps({"combiner": self.combiner, "members": [m.arch for m in self.members],
                                                        "random_state": self._seed}))

    def load(self, path: Path) -> None:
        from safetensors.numpy import load_file

        info = json.loads((path / "combiner.json").read_text())
        self.members = [load_base_model(arch, self.config, path / "members" / arch) for arch in info["members"]]
        data = load_file(str(path / "combiner_data.safetensors"))
        self._train = (data["features"], data["labels"])
        self._seed = int(info["random_state"])
        self._fit_combiner()

    def annotate(self, images: torch.Tensor, ctx: RunContext) -> list[dict[str, Any]]:
        if self.estimator is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        x = member_features(self.members, images, self.config.input_size, self.config.features)
        labels = self.estimator.predict(x)
        probs = None
        if hasattr(self.estimator, "predict_proba"):
            probs = np.zeros((len(x), len(SKIN_GROUPS)))
            probs[:, self.estimator.classes_.astype(int)] = self.estimator.predict_proba(x)
        out = []
        for i, label in enumerate(labels):
            row: dict[str, Any] = {"label": int(label)}
            if probs is not None:
                row["probabilities"] = [round(float(v), 6) for v in probs[i]]
            out.append(row)
        return out


class EnsembleLR(Ensemble):
    """Logistic regression over the base models' softmax outputs: the thesis's adopted annotator (Table 5.1)."""

    combiner = "lr"


class EnsembleRF(Ensemble):
    """Random forest over the base models' softmax outputs (Table 5.1)."""

    combiner = "rf"


class EnsembleSVM(Ensemble):
    """Support vector machine (RBF) over the base models' softmax outputs (Table 5.1)."""

    combiner = "svm"


class EnsembleDT(Ensemble):
    """Decision tree over the base models' softmax outputs (Table 5.1)."""

    combiner = "dt"


class EnsembleET(Ensemble):
    """Extra trees over the base models' softmax outputs (Table 5.1 "Extra Tree")."""

    combiner = "et"


class EnsembleAdaBoost(Ensemble):
    """AdaBoost over the base models' softmax outputs (Table 5.1)."""

    combiner = "adaboost"


class EnsembleGB(Ensemble):
    """Gradient boosting over the base models' softmax outputs (Table 5.1)."""

    combiner = "gb"

"""skin-tone: skin-tone annotation into the thesis's three groups, FST I-II / III-IV / V-VI (Table 5.1).

Thesis chapter 5 (research ch5 sections 1.3 and 6): the skin-tone label of the bias analysis comes from an
annotator; Table 5.1 compares ITA-based annotators, fine-tuned CNNs and stacked ensembles on DDI. Protocol:

1. The annotator (a Generator) is fitted on the labelled fit set: the ``train`` and ``val`` splits of
   ``dataset`` (Fitzpatrick17k's derived 80/20 split in the paper profile), each sample carrying
   ``meta["split"]`` so that the annotator trains on ``train`` and early-stops / stacks on ``val`` (the thesis:
   CNNs fine-tuned with an 80/20 split, the logistic regression fitted on the validation split). An annotator
   given a fit set without ``val`` samples makes its own split.
2. It gets one condition per test image (``reference`` = the image) and returns a Sample whose ``label`` is the
   skin-tone group index (0 = I-II, 1 = III-IV, 2 = V-VI).
3. Scores on the test set (DDI: 656 images, test only): macro precision / recall / F1 (the headline; the
   thesis does not name its averaging, macro is assumed), accuracy, balanced accuracy, weighted P/R/F1,
   per-group F1, and the confusion matrix (``comparisons``).

The record's dataset id is the test set's (the table is "on the DDI dataset"); the fit splits' checksums are
in the record too. derm-mini twin: its skin colour has a known ITA per image, so the ground-truth group is the
Fitzpatrick group of ``meta["ita_skin"]`` (``label_from: ita_skin``), the test set is another derm-mini world
balanced over the groups like DDI (``test_per_group``).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from bench.data.base import DataError, LazySamples
from bench.data.skintone import SKIN_GROUPS
from bench.interface import Condition, RunContext, Sample
from bench.tasks.base import CONFUSION_MATRIX_METRICS, Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import open_dataset

logger = logging.getLogger(__name__)

HEADLINE = ("precision_macro", "recall_macro", "f1_macro")


@dataclass(frozen=True)
class SkinToneConfig:
    """Protocol of skin-tone (thesis Table 5.1; [A] marks choices the thesis leaves open)."""

    dataset: str = "fitzpatrick17k"
    """Dataset the annotators are fitted on (thesis: Fitzpatrick17k)."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to it."""
    fit_splits: tuple[str, ...] = ("train", "val")
    """Its splits given to ``fit`` (each sample tagged ``meta["split"]``); Fitzpatrick17k's are the card's derived
    80/20 split (thesis: 80/20, seed not given). Only ``train``: the annotator splits it itself."""
    test_dataset: str = "ddi"
    """Test set (thesis: DDI, 656 images, never trained on)."""
    test_options: dict = field(default_factory=dict)
    """Options of the test set."""
    test_split: str = "test"
    """Split of the test set."""
    test_per_group: int | None = None
    """Keep the first n test images of each group (class-balanced like DDI); None: every test image (DDI is
    balanced already)."""
    image_size: int = 256
    """Side of the square images the annotators get [A: 256, the 8-patch ITA's input; the CNNs resize to theirs]."""
    label_from: Literal["label", "ita_skin"] = "label"
    """Ground-truth group: the dataset's skin-tone label (Fitzpatrick17k, DDI) or the Fitzpatrick group of
    ``meta["ita_skin"]`` by the Kinyanjui thresholds (derm-mini's exact skin ITA)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if not self.fit_splits or self.fit_splits[0] != "train" or not set(self.fit_splits) <= {"train", "val"}:
            raise ConfigError(f"task.fit_splits must be [train] or [train, val], got {list(self.fit_splits)}")
        if self.test_per_group is not None and self.test_per_group < 1:
            raise ConfigError(f"task.test_per_group must be >= 1 or null, got {self.test_per_group}")
        if self.image_size < 16:
            raise ConfigError(f"task.image_size must be >= 16, got {self.image_size}")


def _group_of(sample: Sample, label_from: str, where: str) -> int:
    if label_from == "ita_skin":
        from bench.metrics.contrast import fitzpatrick_group, ita_to_fitzpatrick

        ita = sample.meta.get("ita_skin")
        if ita is None:
            raise DataError(f"{where}: sample {sample.meta.get('id')} has no meta['ita_skin'] (label_from: ita_skin "
                            "needs a world with known skin ITA, such as derm-mini)")
        return SKIN_GROUPS.index(fitzpatrick_group(ita_to_fitzpatrick(float(ita))))
    if sample.label is None:
        raise DataError(f"{where}: sample {sample.meta.get('id')} has no skin-tone label")
    return int(sample.label)


def _tagged(samples: Sequence[Sample], split: str, label_from: str, where: str) -> LazySamples:
    """``samples`` lazily relabelled with the skin-tone group and tagged ``meta["split"] = split``."""
    def load(i: int, _: str) -> Sample:
        s = samples[i]
        return dataclasses.replace(s, label=_group_of(s, label_from, where), meta={**s.meta, "split": split})

    ids = list(getattr(samples, "ids", [str(i) for i in range(len(samples))]))
    return LazySamples([f"{split}/{sid}" for sid in ids], load)


def _concat(parts: Sequence[LazySamples]) -> LazySamples:
    offsets = np.cumsum([0] + [len(p) for p in parts])

    def load(i: int, _: str) -> Sample:
        k = int(np.searchsorted(offsets, i, side="right") - 1)
        return parts[k][i - int(offsets[k])]

    return LazySamples([sid for p in parts for sid in p.ids], load)


class SkinToneTask(Task):
    """Skin-tone annotation into FST I-II / III-IV / V-VI (thesis Table 5.1)."""

    id: ClassVar[str] = "skin-tone"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "annotate skin tone (FST I-II / III-IV / V-VI) of test images; macro P/R/F1"
    needs: ClassVar[frozenset[str]] = frozenset({"label"})
    has_real_only_arm: ClassVar[bool] = False
    main_metric: ClassVar[str] = "f1_macro"
    sample_scores: ClassVar[SampleScores] = SampleScores((), not_recomputed=CONFUSION_MATRIX_METRICS,
                                                                 confusion=("label", "pred"))
    Config = SkinToneConfig

    def fit_gives(self) -> frozenset[str]:
        return frozenset()  # images with skin-tone labels

    def given(self) -> frozenset[str]:
        return frozenset({"reference"})

    def must_follow(self) -> frozenset[str]:
        return frozenset({"reference"})

    # -- data -----------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        c = self.config
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        if c.label_from == "label" and tuple(ds.class_names) != SKIN_GROUPS:
            raise DataError(f"dataset '{c.dataset}' labels {list(ds.class_names)} are not the skin-tone groups "
                            f"{list(SKIN_GROUPS)} (derm-mini: task.label_from=ita_skin)")
        tds = open_dataset(c.test_dataset, c.test_options, c.image_size, ctx)
        if c.label_from == "label" and tuple(tds.class_names) != SKIN_GROUPS:
            raise DataError(f"test dataset '{c.test_dataset}' labels {list(tds.class_names)} are not the skin-tone "
                            f"groups {list(SKIN_GROUPS)}")
        splits: dict[str, Sequence[Sample]] = {}
        checksums: dict[str, str] = {}
        for name in c.fit_splits:
            splits[name] = _tagged(ds.load(name), name, c.label_from, f"{c.dataset} {name}")
            checksums[name] = ds.split_checksum(name)
        test = _tagged(tds.load(c.test_split), "test", c.label_from, f"{c.test_dataset} {c.test_split}")
        labels = [s.label for s in test]  # one pass over the test set (derm-mini renders it once, cached)
        if c.test_per_group is not None:
            keep: list[int] = []
            for g, name in enumerate(SKIN_GROUPS):
                members = [i for i, lab in enumerate(labels) if lab == g]
                if len(members) < c.test_per_group:
                    raise DataError(f"test set '{c.test_dataset}' has {len(members)} images of group {name}; "
                                    f"task.test_per_group={c.test_per_group} needs more (enlarge the test split)")
                keep += members[:c.test_per_group]
            keep.sort()
            test = test.subset(keep)
            labels = [labels[i] for i in keep]
        splits["test"] = test
        checksums["test"] = tds.split_checksum(c.test_split)
        for name, samples in splits.items():
            if len(samples) == 0:
                raise DataError(f"split '{name}' of task skin-tone is empty")
        data = TaskData(c.test_dataset, splits, checksums, {"test_labels": labels})
        self.adopt(data)
        return data

    def adopt(self, data: TaskData) -> None:
        self._fit_checksums = {k: v for k, v in data.checksums.items() if k != "train"}

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size,
                "fit_splits": list(c.fit_splits), "label_from": c.label_from,
                "other_fit_splits": getattr(self, "_fit_checksums", {})}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        return _concat([data.splits[name] for name in self.config.fit_splits])

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        out = []
        for i, s in enumerate(data.splits["test"]):
            image = s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1)
            out.append(Condition(reference=image, meta={"index": i, "id": s.meta.get("id", str(i))}))
        return out

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from sklearn.metrics import confusion_matrix

        from bench.metrics.classification import classification_scores

        truth = list(data.extra["test_labels"])
        if not synthetic:
            from bench.runner import BenchError

            raise BenchError(f"task skin-tone scores annotations, and method '{method_id}' annotated none of the "
                             f"{len(truth)} test images (it has no real-only arm)")
        if len(synthetic) != len(truth):
            raise ValueError(f"{len(synthetic)} annotations for {len(truth)} test images")
        pred = []
        for i, s in enumerate(synthetic):
            if s.label is None or not 0 <= int(s.label) < len(SKIN_GROUPS):
                raise ValueError(f"annotation {i} has label {s.label!r}; expected a group index 0..{len(SKIN_GROUPS) - 1}")
            pred.append(int(s.label))
        labels = list(range(len(SKIN_GROUPS)))
        metrics = classification_scores(truth, pred, labels=labels, class_names=SKIN_GROUPS)
        cm = confusion_matrix(truth, pred, labels=labels)
        comparisons = {
            "confusion_matrix": {"classes": list(SKIN_GROUPS), "rows": "true group", "columns": "annotated group",
                                 "counts": cm.tolist()},
            "support": {name: int(cm[g].sum()) for g, name in enumerate(SKIN_GROUPS)},
            "predicted": {name: int(cm[:, g].sum()) for g, name in enumerate(SKIN_GROUPS)},
        }
        rows = []
        for i, (s, t, p) in enumerate(zip(data.splits["test"], truth, pred)):
            row = {"id": str(s.meta.get("id", i)), "label": t, "pred": p}
            probs = synthetic[i].meta.get("probabilities")
            if probs is not None and len(probs) == len(SKIN_GROUPS):
                row.update({f"p[{name}]": float(v) for name, v in zip(SKIN_GROUPS, probs)})
            if synthetic[i].meta.get("ita") is not None:
                row["ita"] = float(synthetic[i].meta["ita"])
            rows.append(row)
        counts = {f"fit_{name}": len(data.splits[name]) for name in self.config.fit_splits}
        counts["test"] = len(truth)
        logger.info("skin-tone %s: macro F1 %.4f, accuracy %.4f on %d test images", method_id, metrics["f1_macro"],
                    metrics["accuracy"], len(truth))
        return Evaluation(metrics=metrics, higher_is_better={k: True for k in metrics}, comparisons=comparisons,
                          per_sample=rows, counts=counts)

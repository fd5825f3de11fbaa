"""derm-cls end to end on derm-mini (smoke profile): real-only, classic-aug by reference, a label-following generator."""
import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest
import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample
from bench.registry import METHODS
from bench.runner import BenchError, RunConfig, run_one
from bench.tasks.derm_cls import DermClsConfig, DermClsTask

FAST = ["task.classifiers=[resnet18]", "task.max_epochs=1"]


class LabelStamp(GeneratorBase):
    """Images whose top-left pixel encodes the condition's label; records the labels it was asked for."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"label", "prompt"}, returns={"image"}, requires={"label"})
    asked: ClassVar[list[tuple[int, str]]] = []

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            LabelStamp.asked.append((cond.label, cond.prompt))
            image = torch.zeros(3, 32, 32)
            image[:, 0, 0] = cond.label / 10
            yield Sample(image=image)


def _run(tmp_path, method, *sets):
    return run_one(RunConfig(task="derm-cls", method=method, profile="smoke", sets=[*FAST, *sets], work_dir=tmp_path,
                             progress=False))


def test_real_only_and_label_following_generator(tmp_path):
    record, _ = _run(tmp_path, "real-only")
    assert record["n"]["generated"] == 0
    for key in ("precision_weighted", "recall_weighted", "f1_weighted", "f1_weighted[derm7pt]"):
        assert 0 <= record["metrics"][key] <= 1
    assert "f1[MEL]" in record["per_model"]["resnet18"]

    LabelStamp.asked.clear()
    record, _ = _run(tmp_path, f"{__name__}:LabelStamp")
    # 6 minority classes x 4 (smoke n_per_class), no NV (index 1), in class order, with the class prompt.
    labels = [lab for lab, _ in LabelStamp.asked]
    assert labels == [c for c in (0, 2, 3, 4, 5, 6) for _ in range(4)]
    assert LabelStamp.asked[0][1] == "An image of <lesion> on <skin>. A dermoscopic image of melanoma."
    assert record["n"]["generated"] == 24
    assert record["n"]["real_train"] == 200
    # The real-only arm is shared (cached) and reported as the reference.
    assert record["comparisons"]["reference_per_model"]["resnet18"]["f1_weighted"] == pytest.approx(
        record["comparisons"]["reference_metrics"]["f1_weighted"])
    assert "accuracy" in record["comparisons"]["paired_ttest"]


def test_classic_aug_needs_reference_conditioning(tmp_path):
    with pytest.raises(BenchError, match="cannot run method 'classic-aug'"):
        _run(tmp_path, "classic-aug")
    task = DermClsTask(DermClsConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 80, "val": 5, "test": 5}},
                                     image_size=32, transfer_dataset=None, n_per_class=2, conditioning="reference",
                                     classifiers=("resnet18",), variant="mini"))
    assert task.incompatibility(METHODS.get("classic-aug").capabilities) is None
    data = task.load(RunContext())
    conds = task.conditions(data, RunContext())
    by_id = {s.meta["id"]: s for s in data.splits["train"]}
    for cond in conds:  # each reference is a real training image of the class asked for
        assert by_id[cond.meta["source_id"]].label == cond.label and cond.reference is not None


def test_fit_set_holds_only_the_generated_classes():
    task = DermClsTask(DermClsConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 60, "val": 5, "test": 5}},
                                     image_size=32, transfer_dataset=None, classifiers=("resnet18",), variant="mini"))
    data = task.load(RunContext())
    fit = task.fit_set(data)
    assert len(fit) == sum(lab != 1 for lab in data.extra["train_labels"])
    assert all(s.label != 1 for s in fit)


def test_label_conditioning_fits_on_class_captions():
    from bench.tasks.derm_cls import DermClsConfig, DermClsTask

    task = DermClsTask(DermClsConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 60, "val": 10, "test": 10}},
                                     image_size=32, transfer_dataset=None, classifiers=("resnet18",), variant="mini",
                                     pretrained=False))
    data = task.load(RunContext())
    fit = task.fit_set(data)
    names = data.extra["class_names"]
    words = task.config.class_words
    for s in fit:
        assert s.prompt.startswith(f"A dermoscopic image of {words[names[s.label]]}. A ")
        assert "An image of lesion on skin." not in s.prompt
    plain = DermClsTask(dataclasses.replace(task.config, caption_template=None)).fit_set(data)
    assert [s.prompt for s in plain][0].startswith("An image of lesion on skin.")
    assert task.fit_identity() != DermClsTask(dataclasses.replace(task.config, caption_template=None)).fit_identity()


def test_mask_conditioning_gives_label_prompt_and_a_class_mask_for_controlnet():
    task = DermClsTask(DermClsConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 80, "val": 5, "test": 5}},
                                     image_size=32, transfer_dataset=None, n_per_class=2, conditioning="mask",
                                     classifiers=("resnet18",), variant="mini"))
    controlnet = METHODS.get("controlnet")
    assert task.incompatibility(controlnet.capabilities_for(controlnet.Config())) is None
    assert "cannot follow" in task.incompatibility(METHODS.get("classic-aug").capabilities)
    data = task.load(RunContext())
    names = data.extra["class_names"]
    by_id = {s.meta["id"]: s for s in data.splits["train"]}
    conds = task.conditions(data, RunContext())
    assert len(conds) == 12
    for cond in conds:  # the mask of a real training image of the class asked for, with the class prompt
        source = by_id[cond.meta["source_id"]]
        assert source.label == cond.label and torch.equal(cond.mask, source.mask) and cond.reference is None
        assert cond.prompt == task.prompt_for(names[cond.label])

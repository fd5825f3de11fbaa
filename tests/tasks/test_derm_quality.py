"""derm-quality end to end on derm-mini (smoke profile)."""
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest
import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample
from bench.runner import RunConfig, run_one


class ConstantImages(GeneratorBase):
    """The same grey image for every condition: no diversity at all."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"prompt"}, returns={"image"})
    prompts: ClassVar[list[str]] = []

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            ConstantImages.prompts.append(cond.prompt)
            yield Sample(image=torch.full((3, 64, 64), 0.5))


def _run(tmp_path, method):
    return run_one(RunConfig(task="derm-quality", method=method, profile="smoke", work_dir=tmp_path, progress=False))[0]


def test_real_reference_beats_a_constant_generator(tmp_path):
    real = _run(tmp_path, "real-only")
    assert real["n"]["generated"] == 0 and real["n"]["scored"] == 16
    ConstantImages.prompts.clear()
    const = _run(tmp_path, f"{__name__}:ConstantImages")
    assert set(ConstantImages.prompts) == {"An image of <lesion> on <skin>."}
    key = "lpips_diversity[alex-random]"
    assert const["metrics"][key] == pytest.approx(0.0, abs=1e-6)
    assert real["metrics"][key] > 0
    assert const["metrics"]["fd[mini-clip]"] > real["metrics"]["fd[mini-clip]"]
    assert 0 < real["metrics"]["ms_ssim[win=3]"] <= 1


def test_conditions_carry_training_references_in_a_seeded_cycle():
    from bench.tasks.derm_quality import DermQualityConfig, DermQualityTask

    task = DermQualityTask(DermQualityConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 5, "test": 4}},
                                             image_size=32, n_generate=12, extractor="mini-clip"))
    data = task.load(RunContext())
    conds = task.conditions(data, RunContext())
    again = task.conditions(data, RunContext())
    ids = [c.meta["source_id"] for c in conds]
    train_ids = [s.meta["id"] for s in data.splits["train"]]
    assert sorted(ids[:5]) == sorted(train_ids) and ids[5:10] == ids[:5]  # every image once per cycle
    assert all(torch.equal(a.reference, b.reference) for a, b in zip(conds, again))
    first = train_ids.index(ids[0])
    assert torch.equal(conds[0].reference, data.splits["train"][first].image)
    assert "reference" in task.given()


def test_mask_conditioning_gives_the_reference_images_masks():
    from bench.tasks.derm_quality import DermQualityConfig, DermQualityTask

    base = dict(dataset="derm-mini", dataset_options={"sizes": {"train": 4, "test": 4}}, image_size=32, n_generate=6,
                extractor="mini-clip")
    plain = DermQualityTask(DermQualityConfig(**base))
    masked = DermQualityTask(DermQualityConfig(conditioning="masks", **base))
    data = masked.load(RunContext())
    assert "mask" not in plain.given() and "mask" in masked.given()
    assert all(c.mask is None for c in plain.conditions(data, RunContext()))
    by_id = {s.meta["id"]: s for s in data.splits["train"]}
    for c in masked.conditions(data, RunContext()):
        assert torch.equal(c.mask, by_id[c.meta["source_id"]].mask)


def test_generators_are_fitted_on_unlabelled_images():
    """Experiment 1 trains on ISIC 2018 Task 1, which has no diagnosis labels: derm-mini's labels are dropped."""
    from bench.tasks.derm_quality import DermQualityConfig, DermQualityTask

    task = DermQualityTask(DermQualityConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 6, "test": 4}},
                                             image_size=32, n_generate=4, extractor="mini-clip"))
    data = task.load(RunContext())
    assert any(s.label is not None for s in data.splits["train"])
    fit = task.fit_set(data)
    assert len(fit) == 6 and all(s.label is None for s in fit)
    assert all(torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask) and a.prompt == b.prompt
               for a, b in zip(fit, data.splits["train"]))


def test_sample_grid_draws_mask_rows_only_for_pairs(tmp_path):
    """Image-only tasks (derm-quality, cxr) get a grid of images; pairs get each mask under its image."""
    import numpy as np
    from PIL import Image

    from bench.tasks.common import save_pair_grid

    images = torch.rand(10, 3, 8, 8)
    only = np.asarray(Image.open(save_pair_grid(images, None, tmp_path / "a.png", 10)))
    assert only.shape == (2 * (8 + 2), 8 * (8 + 2), 3)
    assert np.array_equal(only[:8, :8], (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    gray = np.asarray(Image.open(save_pair_grid(torch.rand(2, 1, 8, 8), None, tmp_path / "g.png")))
    assert gray.shape == (10, 20, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    masks = torch.zeros(10, 8, 8, dtype=torch.bool)
    masks[0, :4] = True
    pairs = np.asarray(Image.open(save_pair_grid(images, masks, tmp_path / "b.png", 10)))
    assert pairs.shape == (2 * (2 * 8 + 4), 8 * (8 + 2), 3)
    assert pairs[9:13, :8].min() == 255 and pairs[13:17, :8].max() == 0  # mask row under image 0
    assert save_pair_grid(images[:0], None, tmp_path / "c.png") is None

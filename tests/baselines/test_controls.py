"""The controls of issue 23: world-oracle (fresh draws from the procedural world) and noise (no information)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.noise import Noise
from baselines.world_oracle import WorldOracle
from bench.data.base import DataError
from bench.data.derm_mini import CLASS_NAMES, DermMini, render
from bench.interface import Condition, RunContext, Sample, derive_seed
from bench.runner import RunConfig, run_one


def test_world_oracle_draws_fresh_samples_of_the_fit_worlds_difficulty(tmp_path):
    train = DermMini(sizes={"train": 4}, difficulty={"level": 0.5}).load("train")
    gen = WorldOracle()
    gen.fit(train, RunContext(seed=3))
    masks = [train[i].mask for i in range(4)]
    conds = [Condition(mask=m, label=2, meta={"index": i}) for i, m in enumerate(masks)]
    out = list(gen.generate(conds, RunContext(seed=3)))
    for cond, s in zip(conds, out):
        assert torch.equal(s.mask, cond.mask)  # the given outline
        assert s.label == 2 and s.meta["class_name"] == CLASS_NAMES[2]
        assert s.image.shape == (3, 64, 64) and 0 <= s.image.min() and s.image.max() <= 1
        assert not any(torch.equal(s.image, train[i].image) for i in range(4))  # not a training sample
    # keyed by the condition index and seed: shard-independent, restorable, another seed draws others
    gen.save(tmp_path)
    again = WorldOracle()
    again.load(tmp_path)
    assert torch.equal(next(again.generate(conds[2:3], RunContext(seed=3))).image, out[2].image)
    assert not torch.equal(next(gen.generate(conds[:1], RunContext(seed=4))).image, out[0].image)
    # unconditioned: new outlines, any class; the world's difficulty is the fit set's
    free = list(gen.generate([Condition(meta={"index": i}) for i in range(3)], RunContext(seed=3)))
    assert all(s.mask.any() and s.mask.shape == (64, 64) for s in free)
    assert not torch.equal(free[0].mask, free[1].mask)


def test_world_oracle_matches_the_conditions_contrast_class_when_asked():
    """lowcontrast's conditions are low-contrast lesions: with match_contrast the oracle draws that class (perfect
    synthetic low-contrast data); without it, the world's mix as before (the same images as an unchanged oracle)."""
    from baselines.world_oracle.method import WorldOracleConfig
    from bench.data.derm_mini import oracle_sample

    train = DermMini(sizes={"train": 4}).load("train")
    conds = [Condition(mask=train[i].mask, meta={"index": i, "low_contrast": True}) for i in range(4)]
    plain, matched = WorldOracle(), WorldOracle(WorldOracleConfig(match_contrast=True))
    for gen in (plain, matched):
        gen.fit(train, RunContext(seed=5))
    keys = [derive_seed(5, 23, i) for i in range(4)]
    shapes = [c.mask.numpy().astype(bool) for c in conds]
    drawn = [oracle_sample(matched.world, k, 64, shape=m, low_contrast=True) for k, m in zip(keys, shapes)]
    assert all(meta["low_contrast"] for _, _, meta in drawn)
    for s, (image, _, _) in zip(matched.generate(conds, RunContext(seed=5)), drawn):
        assert torch.equal(s.image, torch.from_numpy(image).permute(2, 0, 1))
    for s, k, m in zip(plain.generate(conds, RunContext(seed=5)), keys, shapes):  # the condition's flag is ignored
        assert torch.equal(s.image, torch.from_numpy(oracle_sample(plain.world, k, 64, shape=m)[0]).permute(2, 0, 1))
    # the world's own mix has high-contrast lesions too; a class that never occurs is one error
    assert not all(oracle_sample(plain.world, k, 64)[2]["low_contrast"] for k in range(20))
    with pytest.raises(ValueError, match="no sample of low_contrast=True in 3 draws"):
        oracle_sample({**plain.world, "difficulty": {"low_contrast_rate": 0.0}}, 0, 64, low_contrast=True, max_draws=3)


def test_match_contrast_needs_a_world_with_contrast_classes():
    from baselines.world_oracle.method import WorldOracleConfig
    from bench.data.ultrasound_mini import BusiMini

    train = BusiMini(sizes={"train": 2}).load("train")
    with pytest.raises(DataError, match="match_contrast needs a world with contrast classes"):
        WorldOracle(WorldOracleConfig(match_contrast=True)).fit(train, RunContext(seed=0))


def test_world_oracle_refuses_real_data():
    real = [Sample(image=torch.rand(3, 8, 8), mask=torch.zeros(8, 8, dtype=torch.bool), meta={"id": "ISIC_0000000"})]
    with pytest.raises(DataError, match="needs a procedural world"):
        WorldOracle().fit(real, RunContext())


def test_render_with_a_given_shape_keeps_it_exactly():
    _, mask, _ = render(2018, 0, 5, 64)
    image, out, meta = render(2018, 0, 9, 64, shape=mask)
    assert np.array_equal(out, mask) and meta["area_ratio"] == pytest.approx(mask.mean())
    with pytest.raises(ValueError, match="non-empty"):
        render(2018, 0, 9, 64, shape=np.zeros((64, 64), bool))


def test_noise_follows_conditions_and_carries_matched_colours(tmp_path):
    train = DermMini(sizes={"train": 16}, image_size=32).load("train")
    gen = Noise()
    gen.fit(train, RunContext())
    conds = [Condition(mask=train[i].mask, label=i % 7, meta={"index": i}) for i in range(16)]
    out = list(gen.generate(conds, RunContext(seed=1)))
    assert all(torch.equal(s.mask, c.mask) and s.label == c.label for s, c in zip(out, conds))
    real_mean = torch.stack([train[i].image for i in range(16)]).mean(dim=(0, 2, 3))
    noise_mean = torch.stack([s.image for s in out]).mean(dim=(0, 2, 3))
    assert torch.allclose(real_mean, noise_mean, atol=0.05)
    # the image is independent of the mask: the mean inside and outside the lesion agree
    inside = np.mean([s.image[:, s.mask].mean().item() for s in out])
    outside = np.mean([s.image[:, ~s.mask].mean().item() for s in out])
    assert abs(inside - outside) < 0.03
    gen.save(tmp_path)
    again = Noise()
    again.load(tmp_path)
    assert torch.equal(next(again.generate(conds[3:4], RunContext(seed=1))).image, out[3].image)
    rand = Noise(Noise.Config(mask="random", image="uniform"))
    rand.fit(train, RunContext())
    s = next(rand.generate([Condition(meta={"index": 0})], RunContext()))
    assert 0.03 < s.mask.float().mean() < 0.45 and s.label in range(7)
    # a reference or prompt is ignored: the same draw as without it, at the reference's size
    ref = Condition(reference=torch.rand(3, 32, 32), prompt="a lesion", meta={"index": 0})
    assert torch.equal(next(rand.generate([ref], RunContext())).image, s.image)


@pytest.mark.parametrize("method", ["world-oracle", "noise"])
def test_controls_run_seg_aug_and_derm_cls_in_smoke(tmp_path, method):
    record, _ = run_one(RunConfig(task="seg-aug", method=method, profile="smoke", work_dir=tmp_path / "seg",
                                  progress=False))
    assert record["n"]["generated"] == 16 and 0 <= record["metrics"]["dice"] <= 1
    assert record["comparisons"]["paired_ttest"]["iou"]["n"] == 2 * record["n"]["test"]
    record, _ = run_one(RunConfig(task="derm-cls", method=method, profile="smoke", work_dir=tmp_path / "cls",
                                  sets=["task.classifiers=[resnet18]", "task.max_epochs=1"], progress=False))
    assert record["n"]["generated"] > 0 and 0 <= record["metrics"]["f1_weighted"] <= 1


def test_world_oracle_draws_cxr_images_whose_findings_follow_the_label_vector():
    from bench.data.cxr_mini import CxrMini
    from bench.tasks.cxr import label_vector

    train = CxrMini(sizes={"train": 4}).load("train")
    gen = WorldOracle()
    gen.fit(train, RunContext(seed=0))

    def drawn(category, start):
        conds = [Condition(labels=label_vector([category]), meta={"index": start + i}) for i in range(24)]
        out = list(gen.generate(conds, RunContext(seed=0)))
        assert all(s.mask is None and torch.equal(s.labels, label_vector([category])) for s in out)
        assert all(s.prompt == f"a chest x ray with {category.lower()}" for s in out)
        return torch.stack([s.image for s in out])

    enlarged, normal = drawn("Cardiomegaly", 0), drawn("No Finding", 100)
    assert enlarged.shape == (24, 1, 64, 64) and 0 <= float(enlarged.min()) and float(enlarged.max()) <= 1
    assert not any(torch.equal(x, train[i].image) for x in enlarged for i in range(4))  # never a split image
    # the enlarged heart brightens the lower centre of the chest (measured 0.659 vs 0.617 over 24 draws each)
    heart = (slice(None), slice(None), slice(34, 54), slice(22, 42))
    assert float(enlarged[heart].mean()) > float(normal[heart].mean()) + 0.02


def test_controls_run_the_cxr_image_protocol_in_smoke(tmp_path):
    for method in ("world-oracle", "noise"):
        record, _ = run_one(RunConfig(task="cxr", method=method, profile="smoke", work_dir=tmp_path / method,
                                      sets=["task.output=image"], progress=False))
        assert {"auroc", "fd[mini-clip]"} <= set(record["metrics"]) and 0 <= record["metrics"]["auroc"] <= 1


def test_world_oracle_renders_the_concepts_each_concept_condition_asks_for():
    """concept-mini: subject<k> conditions get the scene's k-th concept alone, global ones both, in new poses; the
    task scores them as present (presence 1, no leakage) and above noise on CLIP-I."""
    from bench.tasks.concept import ConceptConfig, ConceptTask

    task = ConceptTask(ConceptConfig(dataset="concept-mini", dataset_options={"n_pairs": 2, "test_views": 4},
                                     image_size=64, prompts_per_kind=2, images_per_prompt=2, clip="mini-clip",
                                     dino=None))
    data = task.load(RunContext())
    scenes = {s.id: s for s in data.extra["scenes"]}
    gen = WorldOracle()
    gen.fit(task.fit_set(data), RunContext(seed=0))
    conds = task.conditions(data, RunContext())
    out = list(gen.generate(conds, RunContext(seed=0)))
    for cond, s in zip(conds, out):
        words = scenes[cond.meta["scene"]].class_words
        wanted = words if cond.meta["kind"] == "global" else [words[int(cond.meta["kind"][-1]) - 1]]
        assert s.prompt == "a photo of " + " and ".join(f"a {w}" for w in wanted)
        assert s.image.shape == (3, 64, 64) and s.mask.any()
        refs = scenes[cond.meta["scene"]].references
        assert not any(torch.equal(s.image, r) for kind in refs for r in refs[kind])  # never a split view
    assert len({s.image.sum().item() for s in out}) == len(out)  # every condition its own pose
    oracle = task.evaluate(data, out, RunContext(), "world-oracle").metrics
    noise = Noise()
    noise.fit(task.fit_set(data), RunContext(seed=0))
    floor = task.evaluate(data, list(noise.generate(conds, RunContext(seed=0))), RunContext(), "noise").metrics
    assert oracle["presence[single]"] == 1.0 and oracle["leakage[single]"] == 0.0 and oracle["presence[group]"] == 1.0
    assert floor["presence[single]"] < 0.2 and floor["presence[group]"] == 0.0
    assert oracle["clip_i[mini-clip,single]"] > floor["clip_i[mini-clip,single]"] + 0.1
    with pytest.raises(DataError, match="scene 'nope' is not one of the fit set's scenes"):
        next(gen.generate([Condition(prompt="x", meta={"index": 0, "scene": "nope", "kind": "global"})],
                          RunContext(seed=0)))

"""dreambooth on a tiny random Stable Diffusion folder (the paper profile's loading code), a few steps."""
import pytest
import torch

from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from baselines.dreambooth import DreamBooth, DreamBoothConfig

WORDS = ["an", "image", "of", "lesion", "on", "skin", "dermoscopic", "melanoma", "a", "sks", "nevus", "vascular"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd"), seed=0, sample_size=16, words=WORDS)


@pytest.fixture(scope="module")
def train():
    return list(DermMini(image_size=64, sizes={"train": 6, "val": 1, "test": 1}).load("train"))


def _config(folder, **kw):
    base = dict(backbone=str(folder), resolution=32, steps=3, batch_size=2, lr=1e-3, warmup_steps=0, sample_steps=2,
                guidance_scale=2.0, num_class_images=3, generate_batch=2)
    return DreamBoothConfig(**{**base, **kw})


def _fit(folder, train, work_dir, **kw):
    model = DreamBooth(_config(folder, **kw))
    model.fit(train, RunContext(work_dir=work_dir))
    return model


def test_prior_term_is_logged_and_weighted(sd_folder, train, tmp_path):
    model = DreamBooth(_config(sd_folder))
    model._ensure_model()
    before = {k: v.clone() for k, v in model.parts.unet.state_dict().items()}
    model.fit(train, RunContext(work_dir=tmp_path / "w1"))
    weighted = model.parts.unet.state_dict()
    assert any(not torch.equal(before[k], weighted[k]) for k in before)  # the UNet was trained
    assert all("prior" in row and row["prior"] > 0 for row in model.log)
    assert model.log[0]["loss"] == pytest.approx(model.log[0]["rec"] + model.log[0]["prior"], rel=1e-5)

    unweighted = _fit(sd_folder, train, tmp_path / "w0", prior_loss_weight=0.0)
    plain = _fit(sd_folder, train, tmp_path / "wn", prior_preservation=False)
    assert all("prior" not in row for row in plain.log)
    # Weight 0 trains on the instance half only, so it follows the run without prior preservation (own random
    # streams; Adam amplifies batch-size rounding to ~1e-5), while weight 1 moves the UNet elsewhere (~1e-2).
    assert [r["rec"] for r in unweighted.log] == pytest.approx([r["rec"] for r in plain.log], rel=1e-4)
    assert model.log[1]["rec"] != pytest.approx(plain.log[1]["rec"], rel=1e-4)
    u, p = unweighted.parts.unet.state_dict(), plain.parts.unet.state_dict()
    assert _max_diff(u, p) < 1e-3 < _max_diff(weighted, u)


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_class_images_generated_once_and_reused(sd_folder, train, tmp_path, monkeypatch):
    model = _fit(sd_folder, train, tmp_path)
    files = list(tmp_path.glob("class-images-*.safetensors"))
    assert len(files) == 1 and model.class_image_file == files[0]
    from safetensors.torch import load_file

    images = load_file(str(files[0]))["images"]
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and images.float().std() > 0

    calls = []
    monkeypatch.setattr(DreamBooth, "_sample", lambda self, prompts, seeds: calls.append(prompts))
    rerun = _fit(sd_folder, train, tmp_path)
    assert calls == []  # reused, not sampled again
    assert torch.equal(rerun.class_images(RunContext(work_dir=tmp_path), seed=_seed()), images)
    for a, b in zip(model.log, rerun.log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)  # deterministic fit


def _seed():
    from bench.interface import derive_seed

    return derive_seed(42, 0)


def test_class_images_come_from_the_frozen_base_model(sd_folder, train, tmp_path):
    model = DreamBooth(_config(sd_folder))
    model._ensure_model()
    expected = model._sample([model.resolved_class_prompt], [_seed_for_image(0)])
    model.fit(train, RunContext(work_dir=tmp_path))  # samples the class images before fine-tuning
    stored = model.class_images(RunContext(work_dir=tmp_path), seed=_seed())
    assert torch.allclose(stored[0].float(), (expected[0] * 255).round(), atol=1.0)


def _seed_for_image(i):
    from bench.interface import derive_seed

    return derive_seed(_seed(), 29, i)


def test_prompts_identifier_and_class_text(sd_folder, train, tmp_path):
    import random

    model = DreamBooth(_config(sd_folder, identifier="sks", prefix_only_rate=0.0))
    assert model.instance_prefix == "An image of sks lesion on skin."
    assert model.resolved_class_prompt == "An image of lesion on skin."
    texts = model._instance_texts(train)
    assert texts[0] == f"A dermoscopic image of {model.config.class_words[train[0].meta['class_name']]}."
    assert model._training_prompt(texts[0], random.Random(0)) == f"An image of sks lesion on skin. {texts[0]}"
    cond = Condition(label=0, prompt="An image of <lesion> on <skin>. A dermoscopic image of melanoma.",
                     meta={"index": 0})
    assert model._prompt(cond, 0) == "An image of sks lesion on skin. A dermoscopic image of melanoma."
    assert model._prompt(Condition(prompt="An image of <lesion> on <skin>.", meta={"index": 1}), 1) == \
        "An image of sks lesion on skin."


def test_generates_deterministically(sd_folder, train, tmp_path):
    model = _fit(sd_folder, train, tmp_path, steps=2)
    conds = [Condition(label=0, prompt="An image of <lesion> on <skin>. A dermoscopic image of melanoma.",
                       meta={"index": 0}), Condition(label=2, prompt="An image of <lesion> on <skin>.", meta={"index": 1})]
    out = list(model.generate(conds, RunContext(seed=3)))
    assert out[0].prompt == "An image of lesion on skin. A dermoscopic image of melanoma."
    assert out[0].image.shape == (3, 32, 32) and out[0].mask is None and out[0].label == 0
    again = next(model.generate(conds[:1], RunContext(seed=3)))
    assert torch.allclose(again.image, out[0].image, atol=1e-5)
    model.save(tmp_path / "state")
    loaded = DreamBooth(model.config)
    loaded.load(tmp_path / "state")
    assert torch.allclose(next(loaded.generate(conds[:1], RunContext(seed=3))).image, out[0].image, atol=1e-5)

"""DiDGen: DermPrompt, placeholder tokens, region-aware fine-tuning, layout-guided pair generation.

The paper profile's loading code (`load_sd` of a diffusers folder) is exercised on a tiny random Stable Diffusion
folder (`make_tiny_sd`); everything runs a few steps on CPU.
"""
import random

import numpy as np
import pytest
import torch

from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from methods.didgen import DiDGen, DiDGenConfig
from methods.didgen.prompts import PREFIX, placeholder_positions, training_prompt, with_placeholders

WORDS = ["an", "image", "of", "lesion", "on", "skin", "a", "small", "large", "dark", "brown", "pink", "round",
         "irregular", "with", "hair", "light", "in", "the", "center"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), seed=0, sample_size=16, words=WORDS)


@pytest.fixture(scope="module")
def derm_train():
    return list(DermMini(image_size=64, sizes={"train": 48, "val": 1, "test": 16}).load("train"))


def _config(folder, **kw):
    base = dict(backbone=str(folder), resolution=32, steps=2, batch_size=4, lr=1e-3, warmup_steps=0, ca_res=16,
                sa_res=16, sample_steps=4, guidance_scale=3.0, closing_kernel=3, generate_batch=4, eta=20.0)
    return DiDGenConfig(**{**base, **kw})


def test_dermprompt_rules():
    assert with_placeholders("dark lesions on light skin-colored area") == \
        "dark <lesion>s on light <skin>-colored area"
    rng = random.Random(0)
    draws = [training_prompt("a round dark lesion", rng) for _ in range(4000)]
    rate = np.mean([d == PREFIX for d in draws])
    assert abs(rate - 0.2) < 0.02
    assert training_prompt(None, rng) == PREFIX
    assert "An image of <lesion> on <skin>. a round dark <lesion>" in draws


def test_placeholders_frozen_copies_at_positions_4_and_6(tiny_folder, derm_train):
    model = DiDGen(_config(tiny_folder, steps=3))
    model._ensure_model()
    parts = model.parts
    table = parts.text_encoder.get_input_embeddings().weight
    word_ids = [parts.tokenizer(w, add_special_tokens=False).input_ids for w in ("lesion", "skin")]
    before = table[model.placeholder_ids].clone()
    for row, pieces in zip(before, word_ids):
        assert torch.equal(row, table[pieces].mean(0))
    ids = parts.token_ids([PREFIX + " a dark brown <lesion>"])[0].tolist()
    assert placeholder_positions(ids, model.placeholder_ids) == [4, 6]
    model.fit(derm_train, RunContext())
    assert torch.equal(parts.text_encoder.get_input_embeddings().weight[model.placeholder_ids], before)
    assert not any(p.requires_grad for p in parts.text_encoder.parameters())


def _heldout_iou(model, samples, ca_res):
    """Mean IoU between Otsu(minmax(CA of <lesion>)) and the mask, on held-out images at a mid timestep."""
    from methods.didgen.attention_check import lesion_attention_iou

    return float(np.mean(lesion_attention_iou(model, samples, ca_res)))


@pytest.fixture(scope="module")
def tuned(tiny_folder, derm_train):
    """25 fine-tuning steps with the attention loss. alpha = 1 (the reference code's first commit): at this scale
    25 steps of alpha = 0.1 barely move the maps; the paper trains 20 000 steps."""
    model = DiDGen(_config(tiny_folder, steps=25, lr=3e-3, attn_weight=1.0, prefix_only_rate=1.0))
    model.fit(derm_train, RunContext(seed=0))
    return model


def test_attention_loss_raises_lesion_attention_iou(tiny_folder, derm_train, tuned):
    held = list(DermMini(image_size=64, sizes={"train": 1, "val": 1, "test": 16}).load("test"))
    control = DiDGen(_config(tiny_folder, steps=25, lr=3e-3, attn_weight=0.0, prefix_only_rate=1.0))
    control.fit(derm_train, RunContext(seed=0))
    with_loss, without = _heldout_iou(tuned, held, 16), _heldout_iou(control, held, 16)
    first, last = np.mean([r["attn"] for r in tuned.log[:5]]), np.mean([r["attn"] for r in tuned.log[-5:]])
    assert last < first
    assert with_loss > without + 0.15, (with_loss, without)


def test_layout_guided_pairs_are_well_formed_and_batch_independent(tiny_folder, derm_train, tuned):
    """Guided pairs: shapes, types, a guided image differs from the unguided one, per-index seeding.

    The step size is model-scale dependent: on this tiny random-VAE model eta = 20 moves the latent by ~1e-3 per
    step, so the test uses eta = 2000 (SD's 20 is for its own latent scale)."""
    conds = [Condition(mask=s.mask, meta={"index": i}) for i, s in enumerate(derm_train[:8])]
    guide = DiDGen(_config(tiny_folder, sample_steps=8, eta=2000.0))
    guide.parts, guide.placeholder_ids = tuned.parts, tuned.placeholder_ids
    guided = list(guide.generate(conds, RunContext(seed=1)))
    iou_guided = float(np.mean([s.meta["condition_iou"] for s in guided]))
    plain = DiDGen(_config(tiny_folder, sample_steps=8, ca_guidance=False, sa_guidance=False))
    plain.parts, plain.placeholder_ids = tuned.parts, tuned.placeholder_ids
    iou_plain = float(np.mean([s.meta["condition_iou"] for s in plain.generate(conds, RunContext(seed=1))]))
    print(f"mean IoU with the conditioning mask: guided {iou_guided:.3f}, unguided {iou_plain:.3f}")
    # On this random tiny model the comparison is not stable: measured 0.460 vs 0.388 (1 thread), 0.068 vs 0.046
    # (tox, 2 threads) and 0.197 vs 0.206 (full suite, 2026-11-24). It is reported, not asserted; the guidance itself
    # is tested by the loss falling under its steps (tests/diffusion/test_layout.py) and on mini-sd in the mini runs.
    assert 0.0 <= iou_plain <= 1.0 and 0.0 <= iou_guided <= 1.0
    assert not all(torch.equal(a.image, b.image) for a, b in zip(guided, plain.generate(conds[:2], RunContext(seed=1))))
    for s in guided:
        assert s.image.shape == (3, 32, 32) and s.mask.dtype == torch.bool and s.mask.shape == (32, 32)
    again = list(guide.generate(conds[:2], RunContext(seed=1)))
    assert torch.allclose(again[0].image, guided[0].image, atol=1e-5)  # per-index seeding: batch-independent


def test_save_load_roundtrip(tiny_folder, derm_train, tmp_path):
    model = DiDGen(_config(tiny_folder, steps=2, prompt="dermprompt"))
    model.fit(derm_train[:8], RunContext())
    model.save(tmp_path)
    other = DiDGen(_config(tiny_folder, prompt="dermprompt"))
    other.load(tmp_path)
    conds = [Condition(meta={"index": 3})]
    a, b = next(model.generate(conds, RunContext())), next(other.generate(conds, RunContext()))
    assert a.prompt == b.prompt and a.prompt.startswith(PREFIX + " ")
    assert torch.allclose(a.image, b.image, atol=1e-5) and torch.equal(a.mask, b.mask)


def test_short_guided_generation_is_pinned():
    """A 4-step guided generation on mini-sd (two guided masks and one unconditioned element in one batch), pinned.

    On mini-sd version 1 the generic `bench.diffusion.sampling.guided_sample` reproduced the values of the
    hand-written loop that preceded it (this test's history up to commit 89c8674); the values below are the same
    code on the shipped version 2 (2026-12-05, one and two threads gave identical digits on this machine).

    The images are continuous in the CPU's float rounding and stay pinned tightly (< 2e-6 per pixel apart across
    two machines of one kind and 1 vs 2 threads, measured on version 1); image sums and pixels also differ between
    the two readouts, so reading out the wrong step or dropping the smoothing fails on them. The read-out masks are
    not continuous: the readout quantises an attention score to 256 levels and thresholds it by Otsu, so last-bit
    kernel differences flip pixels and can move the threshold by levels where the score's histogram is flat. Their
    sizes (of 32 x 32 px) keep the tolerances measured across three environments on version 1 (20 px for the last
    step's maps, 70 px for the smoothed second-to-last step's)."""
    from bench.data.derm_mini import DermMini as World

    data = list(World(image_size=64, sizes={"train": 4, "val": 1, "test": 1}).load("train"))
    base = DiDGen(DiDGenConfig(backbone="mini-sd"))
    base._ensure_model()
    expected = {  # image sum, image[0, :, 5, 7], image[2, :, 20, 11], mask sizes, their tolerance (px)
        "default": ({}, 4528.547106951475, [0.5263620615005493, 0.46627277135849, 0.5527334213256836],
                    [0.4305132329463959, 0.4292454719543457, 0.46582192182540894], [779, 839, 679], 20),
        "second": (dict(readout_step="second-to-last", gaussian_smoothing=True), 4531.346915334463,
                   [0.5260111093521118, 0.4667518436908722, 0.5548945665359497],
                   [0.4343002140522003, 0.4310164451599121, 0.4668213725090027], [855, 639, 577], 70),
    }
    conds = [Condition(mask=data[0].mask, meta={"index": 0}), Condition(meta={"index": 1}),
             Condition(mask=data[2].mask, meta={"index": 2})]
    for name, (kw, total, px0, px2, sizes, tolerance) in expected.items():
        model = DiDGen(DiDGenConfig(backbone="mini-sd", resolution=32, ca_res=8, sa_res=16, sample_steps=4,
                                    guidance_scale=3.0, closing_kernel=3, generate_batch=3, eta=200.0, **kw))
        model.parts, model.placeholder_ids = base.parts, base.placeholder_ids
        out = list(model.generate(conds, RunContext(seed=1)))
        images = torch.stack([s.image for s in out])
        assert images.double().sum().item() == pytest.approx(total, abs=1e-3), name
        assert images[0, :, 5, 7].tolist() == pytest.approx(px0, abs=1e-5), name
        assert images[2, :, 20, 11].tolist() == pytest.approx(px2, abs=1e-5), name
        assert [int(s.mask.sum()) for s in out] == pytest.approx(sizes, abs=tolerance), name

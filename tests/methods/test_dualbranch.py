"""Dual-branch generator (thesis chapter 5): layout augmentation, the paper path on a tiny random SD folder,
K/V style injection on mini-sd, determinism. Everything runs a few sampling steps on CPU."""
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import build, profile_section
from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from methods.dualbranch import DualBranch, DualBranchConfig
from methods.dualbranch.augment import LayoutAugmentConfig, augment_layout, back_in_frame, dilate, erode

WORDS = ["an", "image", "of", "lesion", "on", "skin", "a", "small", "large", "dark", "brown", "round"]
NO_RANDOM = LayoutAugmentConfig(resize="none", p_flip=0.0, p_rotate=0.0)


def _box(shape=(21, 21), rows=(7, 14), cols=(5, 16)):
    m = np.zeros(shape, dtype=bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


# -- layout augmentation ---------------------------------------------------------------------------------------
def test_morphology_closed_form_on_a_rectangle():
    box = _box()  # 7 x 11
    assert np.array_equal(dilate(box, 0.9), box)
    assert dilate(box, 1.0).sum() == 7 * 11 + 2 * 7 + 2 * 11  # 4-neighbour ring, no corners
    assert dilate(box, 1.5).sum() == 9 * 13  # the diagonal corners join (distance sqrt 2)
    assert erode(box, 1.0).sum() == 5 * 9
    assert erode(box, 2.0).sum() == 3 * 7
    edge = _box(rows=(0, 5), cols=(0, 5))  # touching the frame: the outside counts as background
    assert erode(edge, 1.0).sum() == 3 * 3


def test_flips_and_rotations_about_the_centroid():
    box = _box(rows=(7, 14), cols=(5, 16))  # centroid (10, 10), the frame centre
    flips_only = LayoutAugmentConfig(resize="none", p_flip=1.0, p_rotate=0.0)
    out, params = augment_layout(box, np.random.default_rng(0), flips_only)
    assert params["flip_h"] and params["flip_v"]
    assert np.array_equal(out, box[::-1, ::-1])
    rot = LayoutAugmentConfig(resize="none", p_flip=0.0, rotation_range=(90.0, 90.0))
    out, params = augment_layout(box, np.random.default_rng(0), rot)
    assert params["angle"] == 90.0
    assert np.array_equal(out, np.rot90(box))
    odd = np.zeros((21, 21), dtype=bool)  # asymmetric, centroid exactly (10, 10)
    for r, c in [(10, 10), (10, 11), (9, 10), (11, 9), (8, 12), (12, 8)]:
        odd[r, c] = True
    out, _ = augment_layout(odd, np.random.default_rng(0),
                            LayoutAugmentConfig(resize="none", p_flip=0.0, rotation_range=(180.0, 180.0)))
    assert np.array_equal(out, np.rot90(odd, 2))
    out, _ = augment_layout(odd, np.random.default_rng(0),
                            LayoutAugmentConfig(resize="none", p_flip=0.0, rotation_range=(90.0, 90.0)))
    assert np.array_equal(out, np.rot90(odd, 1))  # counter-clockwise as displayed


def test_rotation_keeps_the_lesion_in_the_frame():
    corner = _box(shape=(16, 16), rows=(0, 3), cols=(0, 12))  # 3 x 12 bar along the top edge
    out, params = augment_layout(corner, np.random.default_rng(0),
                                 LayoutAugmentConfig(resize="none", p_flip=0.0, rotation_range=(90.0, 90.0)))
    assert out.sum() == corner.sum()  # nothing cut off
    rows, cols = np.nonzero(out)
    assert rows.max() - rows.min() + 1 == 12 and cols.max() - cols.min() + 1 == 3
    assert params["shift"] != [0, 0]
    canvas = np.zeros((48, 48), dtype=bool)
    canvas[10:14, 20:26] = True  # above the frame (the frame is rows/cols 16..31)
    moved, shift = back_in_frame(canvas, (16, 16))
    assert shift == (6, 0) and moved.sum() == 24 and moved[0:4, 4:10].all()


def test_augmentation_is_seeded_and_follows_its_probabilities():
    mask = _box(shape=(32, 32), rows=(8, 20), cols=(6, 22))
    a = augment_layout(mask, np.random.default_rng(5))
    b = augment_layout(mask, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert np.array_equal(augment_layout(mask, np.random.default_rng(1), NO_RANDOM)[0], mask)
    draws = [augment_layout(mask, np.random.default_rng(s), LayoutAugmentConfig(rotation_range=(0.0, 0.0)))[1]
             for s in range(200)]
    assert 0.38 < np.mean([d["flip_h"] for d in draws]) < 0.62
    assert 0.38 < np.mean([d["resize"] == "dilate" for d in draws]) < 0.62
    r_eq = np.sqrt(mask.sum() / np.pi)
    assert all(0.02 * r_eq <= d["morph_distance"] <= 0.10 * r_eq for d in draws)
    big = _box(shape=(64, 64), rows=(12, 52), cols=(10, 50))  # r_eq 22.6 px: distances 0.45 .. 2.26 px
    grown = [augment_layout(big, np.random.default_rng(s), LayoutAugmentConfig(p_expand=1.0, p_flip=0.0,
                                                                                p_rotate=0.0)) for s in range(5)]
    assert all((g | big).sum() == g.sum() and p["resize_pixels"] == g.sum() - big.sum() for g, p in grown)
    assert any(p["resize_pixels"] > 0 for _, p in grown)
    tiny = np.zeros((8, 8), dtype=bool)
    tiny[3, 3] = True  # erosion would empty it: kept
    out, params = augment_layout(tiny, np.random.default_rng(0), LayoutAugmentConfig(p_expand=0.0, p_flip=0.0,
                                                                                       p_rotate=0.0))
    assert out.sum() == 1


# -- generation ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), seed=0, sample_size=16, words=WORDS)


@pytest.fixture(scope="module")
def derm_train():
    return list(DermMini(image_size=64, sizes={"train": 40, "val": 1, "test": 1}).load("train"))


def _conditions(samples, count=2):
    return [Condition(mask=s.mask, reference=s.image, meta={"index": i, "source_id": s.meta.get("id")})
            for i, s in enumerate(samples[:count])]


def _tiny_model(folder, **kw):
    base = dict(backbone=str(folder), resolution=32, steps=2, batch_size=2, lr=1e-3, warmup_steps=0, ca_res=16,
                sa_res=16, sample_steps=4, guidance_scale=3.0, closing_kernel=3, generate_batch=2, eta=20.0,
                lambda_style=5.0, inject_layers=None)
    return DualBranch(DualBranchConfig(**{**base, **kw}))


def test_paper_path_end_to_end_on_tiny_sd(tiny_folder, derm_train, tmp_path):
    from bench.diffusion.style import StyleKV

    model = _tiny_model(tiny_folder)
    model.fit(derm_train[:4], RunContext(seed=0))
    assert len(model.log) == 2  # Stage I ran (DiDGen's fine-tuning)
    calls = []
    plan = StyleKV.plan
    StyleKV.plan = lambda self, step, *a, **k: (calls.append((step, self.recorded_steps)), plan(self, step, *a, **k))
    try:
        out = list(model.generate(_conditions(derm_train), RunContext(seed=0)))
    finally:
        StyleKV.plan = plan
    assert calls == [(1, 4), (0, 4)]  # injection in the last half (2 of 4 steps), inversion steps in reverse
    assert len(out) == 2
    for s in out:
        assert s.image.shape == (3, 32, 32) and 0 <= s.image.min() and s.image.max() <= 1
        assert s.mask.shape == (32, 32) and s.mask.dtype == torch.bool
        assert 0.0 <= s.meta["condition_iou"] <= 1.0
        assert {"flip_h", "flip_v", "angle", "resize"} <= set(s.meta["augmentation"])
    model.save(tmp_path / "fit")
    again = _tiny_model(tiny_folder)
    again.load(tmp_path / "fit")
    assert all(torch.equal(a, b) for a, b in zip(model.parts.unet.state_dict().values(),
                                                  again.parts.unet.state_dict().values()))


def test_single_branch_ablation_with_reconstructed_kv_and_noise_init(tiny_folder, derm_train):
    from bench.diffusion.style import StyleKV

    calls = []
    plan = StyleKV.plan
    StyleKV.plan = lambda self, step, style_rows, query_rows, kv_rows: (
        calls.append((step, list(style_rows), list(query_rows))), plan(self, step, style_rows, query_rows, kv_rows))
    try:
        model = _tiny_model(tiny_folder, branches="single", kv_source="reconstruction", init="noise", generate_batch=2)
        out = list(model.generate(_conditions(derm_train), RunContext(seed=0)))
    finally:
        StyleKV.plan = plan
    # reconstruction steps run in sampling order; one trajectory: every CFG row takes its own query
    assert calls == [(2, [0, 1, 2, 3], [0, 1, 2, 3]), (3, [0, 1, 2, 3], [0, 1, 2, 3])]
    assert len(out) == 2 and all(s.mask.shape == (32, 32) for s in out)


def test_deterministic_and_seeded_per_condition(tiny_folder, derm_train):
    conds = _conditions(derm_train, 2)
    first = list(_tiny_model(tiny_folder).generate(conds, RunContext(seed=0)))
    repeat = list(_tiny_model(tiny_folder).generate(conds, RunContext(seed=0)))
    rebatched = list(_tiny_model(tiny_folder, generate_batch=1).generate(conds, RunContext(seed=0)))
    for a, b, c in zip(first, repeat, rebatched):
        assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
        assert a.meta["augmentation"] == b.meta["augmentation"] == c.meta["augmentation"]
        assert torch.allclose(a.image, c.image, atol=1e-4)  # batching changes only the float summation order
    other = list(_tiny_model(tiny_folder).generate(conds[:1], RunContext(seed=1)))
    assert other[0].meta["augmentation"] != first[0].meta["augmentation"]


def test_kv_injection_carries_the_reference_style_on_mini_sd(derm_train):
    """From the same noise and mask, with the style loss off, the only path from the reference to the image is the
    K/V injection: without it two references give the same image; with it each image is closer (in per-channel
    mean/std) to its own reference than the other reference's image is."""
    from bench.diffusion.style import channel_statistics

    small = [torch.nn.functional.interpolate(s.image[None], size=32, mode="bilinear", antialias=True)[0]
             for s in derm_train]
    lum = [float(im.mean()) for im in small]
    dark, light = int(np.argmin(lum)), int(np.argmax(lum))
    conds = [Condition(mask=derm_train[dark].mask, reference=small[k], meta={"index": 0}) for k in (dark, light)]

    def stats(x):
        mu, sd = channel_statistics(x[None])
        return torch.cat([mu, sd], 1)[0]

    def images(inject):
        cfg = DualBranchConfig(backbone="mini-sd", resolution=32, ca_res=8, sa_res=16, sample_steps=6,
                               guidance_scale=3.0, eta=200.0, lambda_style=0.0, closing_kernel=3, generate_batch=2,
                               init="noise", split_fraction=0.0, inject_layers=inject)
        return [s.image for s in DualBranch(cfg).generate(conds, RunContext(seed=0))]

    off = images(0)
    assert torch.allclose(off[0], off[1], atol=1e-5)
    on = images(None)
    ref_dark, ref_light = stats(small[dark]), stats(small[light])
    d = lambda a, b: float((a - b).pow(2).sum())  # noqa: E731
    assert d(stats(on[0]), ref_dark) < d(stats(on[1]), ref_dark)
    assert d(stats(on[1]), ref_light) < d(stats(on[0]), ref_light)
    assert d(stats(on[0]), ref_dark) < d(stats(off[0]), ref_dark)
    assert d(stats(on[1]), ref_light) < d(stats(off[1]), ref_light)


def test_profiles_build_and_registry():
    from bench.registry import METHODS

    assert METHODS.get("dualbranch") is DualBranch
    yaml = Path(__file__).resolve().parents[2] / "methods" / "dualbranch" / "config.yaml"
    for profile in ("paper", "mini", "smoke"):
        cfg = build(DualBranchConfig, profile_section(yaml, profile), f"dualbranch:{profile}")
        cfg.validate()
    # issue 22: the thesis injects at each decoder self-attention layer (StyleID's last 5 is the option 5)
    assert build(DualBranchConfig, profile_section(yaml, "paper"), "paper").inject_layers is None
    assert build(DualBranchConfig, profile_section(yaml, "smoke"), "smoke").backbone == "mini-sd"

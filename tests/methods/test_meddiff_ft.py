"""MedDiff-FT (issue 21): the inpainting twin of mini-sd, Eq. 2 blending, the quality filter's band, mask erosion,
the mask generator's clean-up and a fit / generate / save / load round trip on derm-mini."""
import pytest
import torch

from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from methods.meddiff_ft import MedDiffFT, MedDiffFTConfig
from methods.meddiff_ft.inpaint import conversion_cost, inpaint, inpainting_twin
from methods.meddiff_ft.masks import clean_mask
from methods.meddiff_ft.quality import erode_mask, erosion_kernel_size, in_band, quantile_band


@pytest.fixture(scope="module")
def mini_sd():
    from bench.diffusion.models import load_mini_sd

    return load_mini_sd()


@pytest.fixture(scope="module")
def derm():
    ds = DermMini(image_size=32, sizes={"train": 24, "val": 4, "test": 1})
    return list(ds.load("train")), list(ds.load("val"))


def test_inpainting_twin_is_zero_initialised_and_costs_1152_parameters(mini_sd):
    twin = inpainting_twin(mini_sd.unet)
    assert twin.config.in_channels == 7 and twin.config.out_channels == 3
    assert conversion_cost(mini_sd.unet)["extra_parameters"] == 4 * 32 * 9
    x, text = torch.randn(2, 3, 32, 32), mini_sd.encode_prompt(["a photo of hta"] * 2)
    extra = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        base = mini_sd.unet(x, 500, encoder_hidden_states=text).sample
        out = twin(torch.cat([x, extra], 1), 500, encoder_hidden_states=text).sample
    torch.testing.assert_close(out, base)


def test_eq2_keeps_the_background_outside_the_mask(mini_sd):
    twin = inpainting_twin(mini_sd.unet).eval()
    bg = torch.rand(2, 3, 32, 32)
    m = torch.zeros(2, 32, 32, dtype=torch.bool)
    m[:, 8:20, 10:24] = True
    out = inpaint(mini_sd, twin, bg, m, "a photo of hta", [1, 2], "ddim", 3, 1.0, "eq2")
    torch.testing.assert_close(out[:, :, ~m[0]], bg[:, :, ~m[0]], atol=1e-5, rtol=0)
    assert (out[:, :, m[0]] - bg[:, :, m[0]]).abs().mean() > 0.05
    free = inpaint(mini_sd, twin, bg, m, "a photo of hta", [1, 2], "ddim", 3, 1.0, "none")
    assert (free[:, :, ~m[0]] - bg[:, :, ~m[0]]).abs().mean() > 0.01  # the code's pipeline does not blend


def test_quality_band_removes_images_outside_it():
    sims = torch.linspace(0.0, 1.0, 11)
    band = quantile_band(sims, 0.1, 0.9)
    assert band == pytest.approx((0.1, 0.9))
    assert in_band(sims, band).tolist() == [False] + [True] * 9 + [False]
    assert in_band(torch.tensor([0.2, 0.5, 0.95]), (0.3, 0.9)).tolist() == [False, True, False]


def test_erosion_and_mask_clean_up():
    assert erosion_kernel_size(512, 512) == 5 and erosion_kernel_size(32, 64) == 3
    m = torch.zeros(20, 20, dtype=torch.bool)
    m[4:14, 5:15] = True
    eroded = erode_mask(m)
    assert eroded.sum() == 64 and (eroded & ~m).sum() == 0
    tiny = torch.zeros(20, 20, dtype=torch.bool)
    tiny[3, 3] = True
    assert torch.equal(erode_mask(tiny), tiny)  # never eroded to nothing
    noisy = m.numpy().copy()
    noisy[8, 8] = False
    noisy[0, 0] = True
    cleaned = clean_mask(noisy)
    assert cleaned[8, 8] and not cleaned[0, 0] and cleaned.sum() == 100


def _config(**kw):
    base = dict(resolution=32, n_finetune=6, steps=2, batch_size=2, grad_accum=1, lr=1e-4, bg_steps=2, bg_sample_steps=2,
                n_backgrounds=3, mask_resolution=16, mask_channels=(8, 16), mask_steps=2, mask_sample_steps=2,
                mask_tries=1, sampler="ddim", sample_steps=2, guidance_scale=1.0, generate_batch=4)
    return MedDiffFTConfig(**{**base, **kw})


def test_fit_generate_filter_save_load(derm, tmp_path):
    train, _ = derm
    model = MedDiffFT(_config(quality_filter=True, mask_erosion=True, qa_retries=1))
    model.fit(train, RunContext(seed=1))
    assert model.state["background_source"] == "generator" and model.backgrounds.shape == (3, 3, 32, 32)
    model._extractor = lambda x: x.flatten(1)  # pixel features: a stand-in for the extractor in this test
    conds = [Condition(meta={"index": i}) for i in range(8)]
    out = list(model.generate(conds, RunContext(seed=4)))
    assert len(out) == 8 and all(s.image.shape == (3, 32, 32) and s.mask.shape == (32, 32) for s in out)
    low, high = model.qa_band
    for s in out:
        assert s.meta["qa_pass"] == (low <= s.meta["similarity"] <= high)
        assert s.meta["mask_from"] == "generator"
    assert sum(s.meta["qa_pass"] for s in out) >= 4  # a [q10, q90] band of 4-image batches, one redraw
    model.save(tmp_path / "state")
    again = MedDiffFT(_config(quality_filter=True, mask_erosion=True, qa_retries=1))
    again.load(tmp_path / "state")
    again._extractor = model._extractor
    again.qa_band = model.qa_band
    for a, b in zip(out, again.generate(conds, RunContext(seed=4))):
        torch.testing.assert_close(a.image, b.image)
        assert torch.equal(a.mask, b.mask)
    given = train[0].mask
    follow = next(iter(model.generate([Condition(mask=given, meta={"index": 0})], RunContext(seed=4))))
    assert follow.meta["mask_from"] == "condition" and (follow.mask & ~given).sum() == 0  # eroded given mask


def test_dataset_backgrounds_need_empty_masks(derm):
    train, _ = derm
    with pytest.raises(ValueError, match="no empty-mask image"):
        MedDiffFT(_config(background_source="dataset")).fit(train, RunContext())

"""controlnet: the paper loading path on a tiny random SD folder, learning on derm-mini with mini-sd, determinism,
save/load reuse and the errors a user can hit."""
import pytest
import torch

from baselines.controlnet import ControlNet, ControlNetConfig
from bench.diffusion.mask_following import lesion_darkness
from bench.diffusion.controlnet import embedding_channels_for, mask_condition
from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from bench.tasks.common import resize_image, resize_mask

WORDS = ["an", "image", "of", "lesion", "on", "skin", "a"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd", seed=0, sample_size=16, words=WORDS)


@pytest.fixture(scope="module")
def derm():
    ds = DermMini(image_size=64, sizes={"train": 128, "val": 12, "test": 1})
    return list(ds.load("train")), list(ds.load("val"))


def _tiny_config(folder, **kw):
    return ControlNetConfig(backbone=str(folder), resolution=32, steps=2, batch_size=2, lr=1e-3, sampler="ddim",
                            sample_steps=3, guidance_scale=2.0, generate_batch=2, **kw)


def test_paper_path_fits_generates_pairs_and_reloads(tiny_sd, derm, tmp_path):
    train, val = derm
    model = ControlNet(_tiny_config(tiny_sd))
    model.fit(train[:8], RunContext())
    assert model.parts.codec.factor == 2 and model.controlnet.config.conditioning_embedding_out_channels == (16, 32)
    assert any(p.abs().sum() > 0 for p in model.controlnet.controlnet_mid_block.parameters())  # zero conv trained
    conds = [Condition(mask=s.mask, label=s.label, meta={"index": i}) for i, s in enumerate(val[:2])]
    out = list(model.generate(conds, RunContext(seed=3)))
    assert len(out) == 2
    for sample, cond in zip(out, conds):
        assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.float32
        assert 0 <= sample.image.min() and sample.image.max() <= 1 and torch.isfinite(sample.image).all()
        assert torch.equal(sample.mask, resize_mask(cond.mask, 32)) and sample.label == cond.label
        assert sample.prompt == "An image of lesion on skin."
    model.save(tmp_path / "state")
    assert (tmp_path / "state" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = ControlNet(_tiny_config(tiny_sd))
    reloaded.load(tmp_path / "state")
    again = list(reloaded.generate(conds, RunContext(seed=3)))
    for a, b in zip(out, again):
        torch.testing.assert_close(a.image, b.image)


def test_same_seed_same_fit_and_images_other_seed_other_images(tiny_sd, derm):
    train, val = derm
    model = ControlNet(_tiny_config(tiny_sd, controlnet_conditioning_scale=0.5))
    model.fit(train[:4], RunContext(seed=2))
    weights = {k: v.clone() for k, v in model.controlnet.state_dict().items()}
    torch.manual_seed(123)  # the global random state plays no part
    model.fit(train[:4], RunContext(seed=2))
    assert all(torch.equal(weights[k], v) for k, v in model.controlnet.state_dict().items())
    conds = [Condition(mask=s.mask, meta={"index": 5 + i}) for i, s in enumerate(val[:3])]
    first = torch.stack([s.image for s in model.generate(conds, RunContext(seed=11))])
    second = torch.stack([s.image for s in model.generate(conds, RunContext(seed=11))])
    alone = next(model.generate(conds[1:2], RunContext(seed=11))).image  # seeded per condition index, not position
    other = torch.stack([s.image for s in model.generate(conds, RunContext(seed=12))])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[1], atol=1e-5, rtol=0)
    assert (first - other).abs().mean() > 1e-3


def test_mini_controlnet_learns_to_follow_the_mask(derm):
    """After a short fit, generated images are darker inside the conditioning mask than outside, clearly more so
    than with the untrained (zero-residual, i.e. mask-blind) ControlNet from the same noise."""
    train, val = derm
    config = ControlNetConfig(backbone="mini-sd", resolution=16, steps=40, batch_size=8, lr=2e-3, sampler="ddim",
                              sample_steps=8, guidance_scale=1.0, generate_batch=12)
    conds = [Condition(mask=s.mask, meta={"index": i}) for i, s in enumerate(val)]
    masks = torch.stack([resize_mask(s.mask, 16) for s in val])
    real = torch.stack([resize_image(s.image, 16) for s in val])
    assert lesion_darkness(real, masks).mean() > 0.08  # the property is there to learn

    model = ControlNet(config)
    untrained = torch.stack([s.image for s in model.generate(conds, RunContext(seed=1))])
    model.fit(train, RunContext())
    trained = torch.stack([s.image for s in model.generate(conds, RunContext(seed=1))])

    before, after = lesion_darkness(untrained, masks), lesion_darkness(trained, masks)
    gain = after - before
    assert gain.mean() > 0.025, (before, after)
    assert (gain > 0).sum() >= 10, (before, after)  # per mask, not carried by a few images
    assert after.mean() > 0.025 and abs(before.mean()) < 0.03, (before, after)


def test_errors_name_the_fix(tmp_path, derm):
    train, val = derm
    with pytest.raises(FileNotFoundError, match="backbone folder not found: .*nowhere"):
        ControlNet(ControlNetConfig(backbone=str(tmp_path / "nowhere"))).fit(train[:2], RunContext())
    model = ControlNet(ControlNetConfig(backbone="mini-sd", resolution=16))
    with pytest.raises(ValueError, match="needs a mask in every condition; condition 1"):
        list(model.generate([Condition(mask=val[0].mask), Condition(label=1)], RunContext()))
    with pytest.raises(FileNotFoundError, match="no trained ControlNet"):
        model.load(tmp_path)


def test_conditioning_helpers():
    assert embedding_channels_for(8) == (16, 32, 96, 256)  # diffusers' default for SD's VAE
    assert embedding_channels_for(1) == (16,) and embedding_channels_for(2) == (16, 32)
    with pytest.raises(ValueError, match="downsamples by 4"):
        embedding_channels_for(8, (16, 32, 64))
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    image = mask_condition(masks, 3)
    assert image.shape == (2, 3, 4, 4) and image.dtype == torch.float32
    assert torch.equal(image[:, 0], masks.float()) and torch.equal(image[:, 2], masks.float())
    assert mask_condition(masks, 1).shape == (2, 1, 4, 4)


def test_n_train_fits_the_lesion_pairs_meddiff_ft_and_t2i_adapter_fit(tiny_sd, derm, monkeypatch):
    """MedDiff-FT Table 2: ControlNet and T2I-Adapter train "on the same 30 pairs" as MedDiff-FT (here 5 of 40):
    with method.n_train the ControlNet trains on exactly the pairs the other two draw at the same seeds."""
    import baselines.controlnet.train as train_module
    from baselines.t2i_adapter import T2IAdapterBaseline, T2IAdapterConfig
    from bench.diffusion.finetune import lesion_pairs
    from bench.interface import derive_seed

    train = derm[0][:40]
    train[0] = type(train[0])(image=train[0].image, mask=torch.zeros_like(train[0].mask), meta=train[0].meta)
    seen = {}

    def capture(parts, controlnet, images, cond, prompt, config, seed, advance=None):
        seen["images"] = images
        return []

    monkeypatch.setattr(train_module, "train_controlnet", capture)
    ControlNet(_tiny_config(tiny_sd, n_train=5)).fit(train, RunContext(seed=3))
    expected = lesion_pairs(train, 5, torch.Generator().manual_seed(derive_seed(42, 3)))
    assert len(expected) == 5 and all(bool(s.mask.any()) for s in expected)
    want = torch.stack([resize_image(s.image, 32) for s in expected])
    torch.testing.assert_close(seen["images"], want)
    t2i = T2IAdapterBaseline(T2IAdapterConfig(resolution=32, adapter_type="full_adapter_xl", channels=(32, 64, 128),
                                              num_res_blocks=1, downscale_factor=2, n_train=5, steps=1, batch_size=2))
    t2i.fit(train, RunContext(seed=3))
    assert t2i.state["train_ids"] == [s.meta["id"] for s in expected]
    with pytest.raises(Exception, match="method.n_train must be >= 1 or null"):
        ControlNetConfig(n_train=0).validate()

"""DiffBoost (issue 21): the edge condition (code's Scharr boundary), the joint augmentation, the code's text mix,
mini-world pretraining (cached), RadImageNet-style folder prompts, and fit / generate / reload on derm-mini."""
import json
import re

import numpy as np
import pytest
import torch

from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from methods.diffboost import DiffBoost, DiffBoostConfig
from methods.diffboost.edges import edge_condition, mask_boundary
from methods.diffboost.train import joint_augment


def test_mask_boundary_is_the_codes_scharr_ring():
    m = np.zeros((12, 12))
    m[3:9, 4:10] = 1
    b = mask_boundary(m)
    assert set(np.unique(b)) <= {0.0, 1.0}
    # exactly the pixels whose 3x3 neighbourhood holds both labels
    from scipy.ndimage import maximum_filter, minimum_filter

    assert np.array_equal(b > 0, maximum_filter(m, 3, mode="reflect") != minimum_filter(m, 3, mode="reflect"))
    image = torch.zeros(3, 12, 12)
    cond = edge_condition(image, torch.from_numpy(m > 0), "sobel")
    assert cond.shape == (3, 12, 12) and torch.equal(cond[0] > 0, torch.from_numpy(b > 0))


def test_joint_augment_keeps_hint_on_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    xa, ha = joint_augment(x, x.clone(), g)
    torch.testing.assert_close(xa, ha)
    assert not torch.allclose(xa, x)


def test_code_text_mix(mini_sd_parts):
    from methods.diffboost.text import AUG_PHRASES, conditioning

    assert len(AUG_PHRASES) == 50
    cond, uncond = conditioning(mini_sd_parts, "Breast, Ultrasound", [0, 51])
    e = mini_sd_parts.encode_prompt(["Breast, Ultrasound, best quality, extremely detailed", "gray, sketch",
                                     AUG_PHRASES[0], AUG_PHRASES[1]]).float()
    torch.testing.assert_close(cond[1], 0.045 * e[0] + 0.005 * e[3] + 0.95 * e[1])
    assert uncond.shape == (1, *cond.shape[1:])


@pytest.fixture(scope="module")
def mini_sd_parts():
    from bench.diffusion.models import load_mini_sd

    return load_mini_sd()


def _config(**kw):
    base = dict(resolution=32, pretrain="mini-worlds", pretrain_per_world=4, pretrain_steps=2, pretrain_lr=1e-3,
                pretrain_batch_size=2, steps=2, batch_size=2, lr=1e-3, sample_steps=2, guidance_scale=2.0,
                generate_batch=4, edge_sigma=1.0, edge_detector="canny")
    return DiffBoostConfig(**{**base, **kw})


def test_fit_generate_reload_and_cached_pretraining(tmp_path):
    ds = DermMini(image_size=32, sizes={"train": 8, "val": 2, "test": 1})
    train = list(ds.load("train"))
    ctx = RunContext(seed=2, work_dir=tmp_path, cache_dir=tmp_path / "cache")
    model = DiffBoost(_config())
    model.fit(train, ctx)
    assert model.state["pretraining"]["cached"] is False and model.state["grey_data"] is False
    conds = [Condition(mask=s.mask, reference=s.image, meta={"index": i, "source_id": s.meta["id"]})
             for i, s in enumerate(train[:2] * 2)]
    out = list(model.generate(conds, ctx))
    assert [s.meta["aug_phrase"] for s in out] == ["Enhance contrast"] * 2 + ["High resolution"] * 2
    for s, cond in zip(out, conds):
        assert torch.equal(s.mask, cond.mask) and s.image.shape == (3, 32, 32)
        assert s.meta["train_hook"] == {"kind": "patch-merge", "alpha": 0.6, "patch_fraction": 1 / 6, "mode": "input"}
    model.save(tmp_path / "state")
    again = DiffBoost(_config(mix_mode="none", grayscale="on"))
    again.load(tmp_path / "state")
    grey = list(again.generate(conds[:1], ctx))[0]
    torch.testing.assert_close(grey.image[0], out[0].image.mean(0))
    assert "train_hook" not in grey.meta
    second = DiffBoost(_config())
    second.fit(train, ctx)
    assert second.state["pretraining"]["cached"] is True
    with pytest.raises(ValueError, match="reference image"):
        list(model.generate([Condition(mask=train[0].mask)], ctx))


def test_the_shipped_pretraining_is_loaded_unchanged_and_keys_the_fit(tmp_path):
    from bench.diffusion.controlnet import load_controlnet
    from bench.diffusion.models import DIFFBOOST_CONTROLNET_DIR, WEIGHTS_DIR, foundation_identity

    train = list(DermMini(image_size=32, sizes={"train": 4, "val": 2, "test": 1}).load("train"))
    ctx = RunContext(seed=0, work_dir=tmp_path, cache_dir=tmp_path / "cache")
    model = DiffBoost(_config(pretrained_controlnet=DIFFBOOST_CONTROLNET_DIR, steps=0))
    model.fit(train, ctx)
    digest = foundation_identity({"pretrained_controlnet": DIFFBOOST_CONTROLNET_DIR})
    assert set(digest) == {DIFFBOOST_CONTROLNET_DIR} and len(digest[DIFFBOOST_CONTROLNET_DIR]) == 16
    assert model.state["pretraining"] == {"pretrain": "shipped", "from": DIFFBOOST_CONTROLNET_DIR, **digest}
    assert not (tmp_path / "cache").exists()  # nothing pretrained in the run
    shipped = load_controlnet(WEIGHTS_DIR / DIFFBOOST_CONTROLNET_DIR).state_dict()
    mine = model.controlnet.state_dict()
    assert shipped.keys() == mine.keys() and all(torch.equal(shipped[k].float(), mine[k].float()) for k in shipped)
    out = list(model.generate([Condition(mask=train[0].mask, reference=train[0].image, meta={"index": 0})], ctx))
    assert out[0].image.shape == (3, 32, 32) and torch.isfinite(out[0].image).all()


def test_ship_writes_a_half_precision_controlnet_folder_and_refuses_a_folder_without_one(tmp_path):
    from typer.testing import CliRunner

    from bench.diffusion.controlnet import build_controlnet, load_controlnet, save_controlnet
    from bench.diffusion.models import load_mini_sd
    from bench.foundation.cli import app

    parts = load_mini_sd()
    controlnet = build_controlnet(parts.unet, parts.codec.factor, 3, None, seed=0)
    save_controlnet(controlnet, tmp_path / "pretrained")
    done = CliRunner().invoke(app, ["ship", "diffboost-controlnet-mini", "--run-dir", str(tmp_path / "pretrained"),
                                    "--weights-dir", str(tmp_path / "weights")])
    assert done.exit_code == 0, done.output
    shipped = load_controlnet(tmp_path / "weights" / "diffboost-controlnet-mini")
    config = json.loads((tmp_path / "weights" / "diffboost-controlnet-mini" / "config.json").read_text())
    assert config["_name_or_path"] == "diffboost-controlnet-mini"  # no path of the machine that shipped it
    ref = controlnet.state_dict()
    for key, value in shipped.state_dict().items():
        torch.testing.assert_close(value.float(), ref[key].half().float())
    bad = CliRunner().invoke(app, ["ship", "diffboost-controlnet-mini", "--run-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "holds no pretrained ControlNet" in re.sub(r"[│╭╮╰╯─\s]+", " ", bad.output)


def test_folder_pretraining_prompts(tmp_path):
    from PIL import Image

    from methods.diffboost.method import _folder_pairs

    for rel in ("CT/abd/normal", "US/thyroid/nodule"):
        (tmp_path / rel).mkdir(parents=True)
        Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / rel / "a.png")
    samples, prompts = _folder_pairs(tmp_path, 16)
    assert prompts == ["CT, abdomen, normal", "US, thyroid, nodule"] and samples[0].image.shape == (3, 16, 16)


def test_hed_reads_the_bsds500_key_layout(tmp_path):
    """A weight file in sniklaus' layout (``moduleVggOne.0.weight`` ...) loads; edges are 8-bit levels in [0, 1]."""
    from methods.diffboost.edges import image_edges
    from methods.diffboost.hed import HED, load_hed

    torch.manual_seed(0)
    state = {k.replace("net", "module", 1): v for k, v in HED().state_dict().items()}
    torch.save(state, tmp_path / "network-bsds500.pth")
    hed = load_hed(tmp_path / "network-bsds500.pth")
    edges = image_edges(np.random.default_rng(0).random((3, 16, 16)), "hed", hed=hed)
    assert edges.shape == (16, 16) and 0 <= edges.min() and edges.max() <= 1
    assert np.allclose(edges * 255, np.round(edges * 255))
    with pytest.raises(FileNotFoundError, match="HED weights not found"):
        load_hed(tmp_path / "missing.pth")

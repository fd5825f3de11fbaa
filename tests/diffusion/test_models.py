"""Model loading: the tiny random SD folder through the real loader, clear errors, the shipped mini models."""
import json

import pytest
import torch

from bench.diffusion.models import ModelError, SDComponents, export_sd_folder, load_mini_sd, load_sd, make_tiny_sd
from bench.diffusion.sampling import make_scheduler, sample


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", seed=0)


def test_tiny_folder_has_the_real_layout(tiny_folder):
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_folder / part).is_dir(), part
    assert (tiny_folder / "tokenizer" / "vocab.json").is_file() and (tiny_folder / "tokenizer" / "merges.txt").is_file()
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]


def test_tiny_folder_loads_through_from_pretrained_and_samples(tiny_folder):
    parts = load_sd(tiny_folder)
    assert isinstance(parts, SDComponents) and parts.vae is not None
    assert parts.codec.scaling_factor == parts.vae.config.scaling_factor
    cond, uncond = parts.encode_prompt(["a red circle"]), parts.encode_prompt([""])
    assert cond.shape == (1, 77, 32)
    images = [sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=3,
                     guidance_scale=4.0, uncond=uncond, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    assert images[0].shape == (1, 3, 32, 32) and 0 <= images[0].min() and images[0].max() <= 1
    torch.testing.assert_close(images[0], images[1])  # same generator seed, same images


def test_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(ModelError) as err:
        load_sd(tmp_path / "nowhere")
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(ModelError, match="missing text_encoder/"):
        load_sd(tmp_path / "partial")


def test_mini_sd_exports_to_a_folder_that_load_sd_reads(tmp_path):
    parts = load_mini_sd()
    folder = export_sd_folder(parts, tmp_path / "mini-sd")
    again = load_sd(folder)
    assert again.vae is None and again.codec.factor == 1  # pixel space: identity codec
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cond = parts.encode_prompt(["a red circle"])
    with torch.no_grad():
        torch.testing.assert_close(again.unet(x, 500, encoder_hidden_states=again.encode_prompt(["a red circle"])).sample,
                                   parts.unet(x, 500, encoder_hidden_states=cond).sample)


def test_foundation_identity_names_the_weights_a_config_uses_and_follows_their_bytes(tmp_path, monkeypatch):
    from bench.diffusion import models

    (tmp_path / "mini-sd.safetensors").write_bytes(b"v1")
    (tmp_path / "mini-clip.safetensors").write_bytes(b"clip")
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    config = {"base_model": "mini-sd", "nested": {"models": ["unet", "mini-clip"]}, "other": "mini-sdx"}
    before = models.foundation_identity(config)
    assert set(before) == {"mini-sd", "mini-clip"}
    assert models.foundation_identity({"base_model": "stable-diffusion-v1-4"}) == {}
    (tmp_path / "mini-sd.safetensors").write_bytes(b"v2, retrained")
    after = models.foundation_identity(config)
    assert after["mini-sd"] != before["mini-sd"] and after["mini-clip"] == before["mini-clip"]

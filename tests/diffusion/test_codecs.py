"""Codecs: identity mapping and the VAE's scaling factor."""
import torch
from diffusers import AutoencoderKL

from bench.diffusion.codecs import Codec, IdentityCodec, VaeCodec


def test_identity_codec_round_trip_and_range():
    codec = IdentityCodec(3)
    images = torch.rand(2, 3, 8, 8)
    latents = codec.encode(images)
    assert latents.min() >= -1 and latents.max() <= 1
    torch.testing.assert_close(codec.decode(latents), images)
    assert isinstance(codec, Codec) and codec.factor == 1
    assert codec.encode(torch.rand(1, 1, 8, 8)).shape == (1, 3, 8, 8)  # grayscale is repeated


def test_vae_codec_uses_the_config_scaling_factor():
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        scaling_factor=0.5).eval()
    codec = VaeCodec(vae)
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        latents = codec.encode(images)
        raw = vae.encode(images * 2 - 1).latent_dist.mean
        decoded = codec.decode(latents)
        direct = ((vae.decode(raw).sample + 1) / 2).clamp(0, 1)
    assert codec.factor == 2 and codec.channels == 4
    torch.testing.assert_close(latents, raw * 0.5)
    torch.testing.assert_close(decoded, direct)
